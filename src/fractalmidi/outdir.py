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
- Every file is written atomically (:func:`atomic_path`, :func:`atomic_open`): to a hidden
  temporary file beside it, renamed over the target only when complete, so a kill or a full disk
  never leaves a half-written file; JSON goes through one writer (:func:`write_json`).

This module is fractalmidi's one place for file I/O: the rules above, and the names of the files
one command writes and another reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from fractalmidi.errors import UserError

MARKER = ".fractalmidi-output.json"
"""Written into every output folder fractalmidi makes; ``--overwrite`` needs it."""
OWN_PREFIX = ".fractalmidi-"
"""Names of the tool's own helper entries inside an output folder (marker, lock, stage, old)."""
STAGE_TAG, OLD_TAG = "stage", "old"
MANIFEST_FILE = "manifest.json"
"""A prepared data folder's description (written by ``prepare``, read by train, generate, evaluate)."""
SAMPLES_FILE = "samples.json"
"""What ``generate`` made and with which settings (read back by ``evaluate``)."""
JSON_INDENT = 2
_TEMP_NAME = re.compile(r"^\.(?P<name>.*)\.fractalmidi-(?P<pid>\d+)-[0-9a-f]+\.partial$")
_TEMP_FILE = re.compile(r"^\..*\.fractalmidi-(?P<pid>\d+)-[0-9a-f]+\.tmp(\.[^.]+)?$")
_INNER_NAME = re.compile(rf"^{re.escape(OWN_PREFIX)}(?:{STAGE_TAG}|{OLD_TAG})-(?P<pid>\d+)-[0-9a-f]+$")
TOKEN_BYTES = 4


def resolved(path: str | os.PathLike) -> Path:
    """Absolute path with ``~`` expanded and symlinks followed (``.`` becomes a real name)."""
    return Path(path).expanduser().resolve()


def unique_suffix() -> str:
    """``PID-TOKEN``: unique to this run, and tells a later run whether its owner is still alive."""
    return f"{os.getpid()}-{secrets.token_hex(TOKEN_BYTES)}"


def temp_file_name(name: str) -> str:
    """Hidden name of a file being written, unique to the run; :func:`sweep_stale_files` knows it.
    It ends with the target's suffix, for writers that choose a format by it."""
    return f".{name}.fractalmidi-{unique_suffix()}.tmp{Path(name).suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder is created) for a writer to fill; it
    replaces ``path`` in one rename when the block completes and is removed on any other exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_file_name(path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = False, **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path`; ``durable`` also syncs the data to the disk
    before the rename (checkpoints: the previous one stays until the new one is whole)."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes a new file: mode {mode!r} has no 'w'")
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **kwargs) as handle:
        yield handle
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path: str | os.PathLike, text: str, **kwargs: Any) -> None:
    """Write ``text`` atomically (``kwargs`` go to ``open``, e.g. ``errors``)."""
    with atomic_open(path, "w", **kwargs) as handle:
        handle.write(text)


def plain_json(value: Any) -> Any:
    """``value`` as JSON can hold it: mappings with string keys, lists, finite numbers (NaN and
    infinities become ``None``), strings (paths too), booleans, ``None``; numpy scalars and arrays
    become numbers and lists. Anything else is a ``TypeError`` naming its type."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return plain_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` (made plain by :func:`plain_json`) as indented JSON, atomically."""
    write_text(path, json.dumps(plain_json(value), indent=JSON_INDENT, allow_nan=False) + "\n")


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
        raise UserError(f"{flag} {out} {why} the input {item}; fractalmidi never writes into its inputs: "
                        f"choose another output")


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
    write_json(folder / MARKER, record)


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


def clear_folder(folder: Path, names: Iterable[str] | None = None, *, ignore_errors: bool = False) -> None:
    """Remove the entries of a folder fractalmidi may replace (all of them, or only ``names``), after
    the caller checked that they are its own; the folder itself stays (it may be the current one or
    a mount point) and links are removed, never followed. ``ignore_errors``: cleanup on a failure
    path, which must not hide the original error."""
    entries = list(folder.iterdir()) if names is None else [folder / name for name in names]
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
        except OSError:
            if not ignore_errors:
                raise


def claim_dir(out: str | os.PathLike, overwrite: bool, *, command: str, entries: Iterable[str],
              inputs: Iterable[str | os.PathLike | None] = (), flag: str = "--out") -> Path:
    """An empty ``out`` for an output written in place, step by step (too large or long to stage):
    a previous output of the same ``command`` is replaced, another non-empty folder only with
    ``overwrite`` and only if fractalmidi made it; never an input. The marker (listing ``entries``)
    is written first, so that an interrupted run's folder is still replaceable."""
    path = resolved(out)
    previous = path.is_dir() and (read_marker(path) or {}).get("command") == command
    check_out_dir(out, overwrite or previous, inputs, flag)
    if path.is_dir():
        clear_folder(path)
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, command, entries)
    return path


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
    try:
        write_marker(stage, command, entries=())
    except BaseException:  # e.g. a full disk: leave no empty stage behind
        shutil.rmtree(stage, ignore_errors=True)
        raise
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
