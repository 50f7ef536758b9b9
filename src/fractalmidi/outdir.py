"""Output folders and files that never cost the user data: the one set of rules every command uses.

- An output never is, contains or lies inside an input (``--out SRC``, ``--out ~``, ``convert
  x.mid x.mid``): refused before any work, naming the input.
- A non-empty output folder is replaced only with ``--overwrite``, and only when fractalmidi made
  it (the marker file :data:`MARKER` lists what it wrote) and holds nothing else; siblings are
  never touched.
- Work happens in a staging folder with a name unique to the run (``pid`` + random token); it
  becomes the output only when complete and is removed on every exit path. Stale staging folders
  of killed runs (dead ``pid``, our marker inside) are swept by the next run on the same output.
- An existing folder (empty, or ours with ``--overwrite``) keeps its identity: its entries are
  swapped, the folder itself is never renamed (works for ``--out .`` and mount points).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from fractalmidi.errors import UserError

MARKER = ".fractalmidi-output.json"
"""Written into every output folder fractalmidi makes; ``--overwrite`` needs it."""
OWN_PREFIX = ".fractalmidi-"
"""Names of the tool's own helper entries inside an output folder (marker, lock, stage, old)."""
STAGE_TAG, OLD_TAG = "stage", "old"
_TEMP_NAME = re.compile(r"^\.(?P<name>.*)\.fractalmidi-(?P<pid>\d+)-[0-9a-f]+\.partial$")
_TEMP_FILE = re.compile(r"^\..*\.fractalmidi-(?P<pid>\d+)-[0-9a-f]+\.tmp$")
_INNER_NAME = re.compile(rf"^{re.escape(OWN_PREFIX)}(?:{STAGE_TAG}|{OLD_TAG})-(?P<pid>\d+)-[0-9a-f]+$")
TOKEN_BYTES = 4


def resolved(path: str | os.PathLike) -> Path:
    """Absolute path with ``~`` expanded and symlinks followed (``.`` becomes a real name)."""
    return Path(path).expanduser().resolve()


def unique_suffix() -> str:
    """``PID-TOKEN``: unique to this run, and tells a later run whether its owner is still alive."""
    return f"{os.getpid()}-{secrets.token_hex(TOKEN_BYTES)}"


def temp_file_name(name: str) -> str:
    """Hidden name of a file being written, unique to the run; :func:`sweep_stale_files` knows it."""
    return f".{name}.fractalmidi-{unique_suffix()}.tmp"


def sweep_stale_files(folder: Path) -> None:
    """Remove files a killed run was writing in ``folder`` (named by :func:`temp_file_name`, dead pid)."""
    if not Path(folder).is_dir():
        return
    for entry in Path(folder).iterdir():
        match = _TEMP_FILE.match(entry.name)
        if match and entry.is_file() and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], flag: str = "--out") -> None:
    """Refuse an output that is, contains or lies inside any input (names the input and why)."""
    target = resolved(out)
    for item in inputs:
        if item is None:
            continue
        source = resolved(item)
        if target == source:
            why = "is"
        elif source.is_relative_to(target):
            why = "contains"
        elif target.is_relative_to(source):
            why = "lies inside"
        else:
            continue
        raise UserError(f"{flag} {out} {why} the input {item}; fractalmidi never writes into its inputs: choose another output")


def is_ours(folder: Path) -> bool:
    """Whether ``folder`` holds the marker of a fractalmidi output."""
    return read_marker(folder) is not None


def read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "fractalmidi" else None


def write_marker(folder: Path, command: str, entries: Iterable[str] | None = None) -> None:
    """Record that fractalmidi made ``folder`` and which entries it wrote (default: all present)."""
    names = sorted(entries) if entries is not None else sorted(n for n in os.listdir(folder) if not _is_helper(n))
    from fractalmidi import __version__

    record = {"tool": "fractalmidi", "version": __version__, "command": command,
              "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "entries": names}
    tmp = folder / f"{MARKER}.{unique_suffix()}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def _is_helper(name: str) -> bool:
    """The tool's own bookkeeping and temporary files (never counted as the user's)."""
    return name.startswith(OWN_PREFIX) or (name.startswith(".") and ".tmp" in name)


def foreign_entries(folder: Path) -> list[str]:
    """Entries of a fractalmidi output that its marker does not list (someone else put them there)."""
    marker = read_marker(folder) or {}
    listed = set(marker.get("entries", ()))
    return sorted(n for n in os.listdir(folder) if n not in listed and not _is_helper(n))


def check_replaceable(folder: Path, flag: str = "--out") -> None:
    """``--overwrite`` may replace ``folder`` only if it is empty or fractalmidi's and nothing else's."""
    if not any(folder.iterdir()):
        return
    if not is_ours(folder):
        raise UserError(f"{flag} {folder} was not made by fractalmidi (no {MARKER} in it), so --overwrite will not "
                        f"replace it; choose another folder or empty it yourself")
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{flag} {folder} holds files fractalmidi did not write ({shown}), so --overwrite will not "
                        f"replace it; move them away or choose another folder")


def check_out_dir(out: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = (),
                  flag: str = "--out") -> None:
    """Refuse ``out`` unless it can be written: not an input, and absent, empty or replaceable."""
    check_not_input(out, inputs, flag)
    path = resolved(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {out} exists and is not a folder; choose another path")
    sweep_stale(path)
    if path.is_dir():
        if any(path.iterdir()):
            if not overwrite:
                raise UserError(f"{flag} {out} already exists and is not empty; pass --overwrite to replace a folder "
                                f"fractalmidi made, or choose another folder")
            check_replaceable(path, flag)


def check_out_file(out: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = (),
                   flag: str = "output") -> None:
    """Refuse writing file ``out`` over one of the inputs, over a folder, or over a file without ``overwrite``."""
    check_not_input(out, inputs, flag)
    path = resolved(out)
    if path.is_dir():
        raise UserError(f"{flag} {out} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {out} already exists: pass --overwrite to replace it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(out: Path) -> None:
    """Remove staging folders that killed runs left for ``out`` (dead owner, our marker inside)."""
    out = resolved(out)
    candidates: list[tuple[Path, re.Match]] = []
    if out.parent.is_dir():
        for entry in out.parent.glob(f".{glob_escape(out.name)}.fractalmidi-*.partial"):
            match = _TEMP_NAME.match(entry.name)
            if match and match["name"] == out.name:
                candidates.append((entry, match))
    if out.is_dir():
        for entry in out.glob(f"{OWN_PREFIX}*"):
            match = _INNER_NAME.match(entry.name)
            if match:
                candidates.append((entry, match))
    for entry, match in candidates:
        if entry.is_dir() and not _alive(int(match["pid"])) and (is_ours(entry) or not any(entry.iterdir())):
            shutil.rmtree(entry, ignore_errors=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def new_stage(out: Path, command: str) -> Path:
    """A fresh staging folder for ``out``: inside it when ``out`` exists (the folder keeps its
    identity), else a hidden sibling renamed to ``out`` at the end. It carries our marker."""
    out = resolved(out)
    if out.is_dir():
        stage = out / f"{OWN_PREFIX}{STAGE_TAG}-{unique_suffix()}"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = out.parent / f".{out.name}.fractalmidi-{unique_suffix()}.partial"
    stage.mkdir()
    write_marker(stage, command, entries=())
    return stage


def publish(stage: Path, out: Path, overwrite: bool, command: str, flag: str = "--out") -> None:
    """Make the finished ``stage`` the content of ``out`` (rechecked: someone may have written there).

    A new ``out`` is one rename; an existing one keeps its folder: its old entries move into a
    hidden folder, the new ones move in, then the old ones are deleted.
    """
    out = resolved(out)
    write_marker(stage, command)
    if not out.exists():
        try:
            os.rename(stage, out)
            return
        except OSError:
            if not out.is_dir():
                raise
    if not out.is_dir():
        raise UserError(f"{flag} {out} appeared meanwhile and is not a folder; the result was not kept")
    old_entries = [e for e in out.iterdir() if e != stage and not _INNER_NAME.match(e.name)]
    if old_entries:
        if not overwrite:
            raise UserError(f"{flag} {out} was filled by someone else meanwhile; the result was not kept")
        check_replaceable(out, flag)
    old = out / f"{OWN_PREFIX}{OLD_TAG}-{unique_suffix()}"
    old.mkdir()
    write_marker(old, command, entries=())
    moved: list[Path] = []
    try:
        for entry in old_entries:
            os.rename(entry, old / entry.name)
            moved.append(entry)
        for entry in stage.iterdir():
            if entry.name != MARKER:
                os.rename(entry, out / entry.name)
        os.replace(stage / MARKER, out / MARKER)
    except BaseException:
        for entry in moved:  # put the user's previous output back where it was
            with contextlib.suppress(OSError):
                os.rename(old / entry.name, entry)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, overwrite: bool, *, command: str,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``out``, on any exit path it is gone.

    ``out`` is checked first (see :func:`check_out_dir`) and left untouched on failure.
    """
    inputs = list(inputs)
    check_out_dir(out, overwrite, inputs)
    stage = new_stage(Path(out), command)
    try:
        yield stage
        publish(stage, Path(out), overwrite, command)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
