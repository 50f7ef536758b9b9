"""``fractalmidi prepare``: a MIDI folder or known dataset -> cached piano-rolls, splits, manifest.

The output is built in ``OUT.partial`` (journaled, so ``--resume`` continues a killed run; locked,
so a second run on it stops) and published to ``OUT`` by :mod:`fractalmidi.outdir` when complete.
Bad files and duplicates are skipped with their reason in the manifest; pieces sharing a file-name
stem share a split.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fractalmidi import __version__
from fractalmidi.data.cache import (
    INDEX_COLUMNS,
    INDEX_FILE,
    JOURNAL_FILE,
    MANIFEST_FILE,
    PIECES_FILE,
    ROLLS_FILE,
    SPLIT_CODES,
    CacheWriter,
    format_tag,
)
from fractalmidi.data.grid import parse_grid
from fractalmidi.data.pool import CrashedJob, run_ordered
from fractalmidi.data.roll import DEFAULT_MAX_STEPS
from fractalmidi.data.sources import (
    DIGEST_KEY,
    LAYOUT_DEFAULT_GRID,
    LAYOUT_FIXED_GRID,
    SPLITS,
    convert_job,
    group_key,
    open_source,
)
from fractalmidi.data.split import DEFAULT_MIN_SPLIT_COUNT, DEFAULT_SPLIT, assign_splits, parse_ratios
from fractalmidi.errors import UserError
from fractalmidi.outdir import (
    check_not_input,
    check_out_dir,
    check_replaceable,
    clear_folder,
    is_ours,
    publish,
    resolved,
    write_json,
    write_marker,
)

PARTIAL_SUFFIX = ".partial"
SETTINGS_FILE = "settings.json"
PARTIAL_ENTRIES = (ROLLS_FILE, INDEX_FILE, PIECES_FILE, MANIFEST_FILE, JOURNAL_FILE, SETTINGS_FILE)
"""What a run of ``prepare`` writes into ``OUT.partial`` (its marker lists them)."""
DUPLICATE_REASON = "duplicate: same notes as"
MAX_REASONS_SHOWN = 4
RESUME_KEYS = ("layout", "root", "grid", "sustain", "max_steps")
"""Settings that must match for ``--resume`` to append to an earlier run."""


def default_workers() -> int:
    """Parser processes when not told: one per core."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class PrepareRequest:
    """What to prepare and how; the defaults are ``fractalmidi prepare``'s."""

    out: str | os.PathLike
    src: str | os.PathLike | None = None
    """A folder of MIDI files (searched recursively) or a known dataset folder; None with ``dataset``."""
    layout: str = "auto"
    dataset: str | None = None
    grid: str | None = None
    """None = the layout's default grid."""
    sustain: bool = False
    split: str = DEFAULT_SPLIT
    min_split_count: int = DEFAULT_MIN_SPLIT_COUNT
    seed: int = 0
    workers: int = field(default_factory=default_workers)
    max_steps_per_piece: int = DEFAULT_MAX_STEPS
    overwrite: bool = False
    resume: bool = False
    strict: bool = False


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    """The prepared folder (absolute)."""
    manifest: dict[str, Any] | None
    """Its manifest; None when ``resume`` found it already complete (nothing was done)."""

    def summary(self) -> str:
        """One line saying what was prepared (or that nothing was left to do)."""
        if self.manifest is None:
            return f"{self.out} is already complete; nothing to resume"
        m = self.manifest
        return (f"prepared {m['pieces']} pieces ({m['total_steps']} steps, splits {m['splits']}), "
                f"skipped {len(m['failed'])} (of which {m['duplicates']} duplicates) -> {self.out}")


def prepare(request: PrepareRequest) -> PrepareResult:
    """Prepare ``request.out`` (published only when complete) and return its manifest."""
    if request.max_steps_per_piece < 1:
        raise UserError(f"--max-steps-per-piece must be a positive number of steps, got {request.max_steps_per_piece}")
    if request.workers < 0:
        raise UserError(f"--workers must be >= 0 (0 = parse in this process), got {request.workers}")
    if request.min_split_count < 0:
        raise UserError(f"--min-split-count must be >= 0, got {request.min_split_count}")
    ratios = parse_ratios(request.split)
    source = open_source(request.src, layout=request.layout, dataset=request.dataset)
    grid = parse_grid(request.grid or LAYOUT_DEFAULT_GRID[source.layout])
    fixed = LAYOUT_FIXED_GRID.get(source.layout)
    if fixed is not None and grid.name != fixed:
        raise UserError(f"the {source.layout} layout exists only on the {fixed} grid, got --grid {grid.name}")
    settings = {
        "layout": source.layout, "root": source.root, "grid": grid.name, "sustain": bool(request.sustain),
        "max_steps": request.max_steps_per_piece, "split": list(ratios), "min_split_count": request.min_split_count,
        "seed": request.seed, "workers": request.workers,
    }
    out = resolved(request.out)
    inputs = [request.src] if request.src is not None else []
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    check_not_input(out, inputs)
    check_not_input(partial, inputs, "--out's work folder")
    with _claim_output(out, partial, request, settings) as claimed:
        if not claimed:
            return PrepareResult(out, None)
        manifest = _convert_all(source, partial, grid.name, request, settings, ratios)
        (partial / SETTINGS_FILE).unlink(missing_ok=True)
        publish(partial, out, request.overwrite, "prepare")
    return PrepareResult(out, manifest)


def _convert_all(source, partial: Path, grid: str, request: PrepareRequest, settings: dict, ratios) -> dict[str, Any]:
    """Convert every job into ``partial`` (resumable), then write the index and manifest."""
    writer = CacheWriter(partial)
    seen = _digests(writer)
    jobs = (job for job in source.jobs if job.key not in writer.done_keys)
    bar = tqdm(total=source.total, initial=len(writer.done_keys), unit="file", desc="prepare", dynamic_ncols=True)
    try:
        for job, result in run_ordered(convert_job, jobs, (grid, request.sustain, request.max_steps_per_piece),
                                       request.workers):
            roll, meta = (None, result.reason) if isinstance(result, CrashedJob) else result
            if roll is not None and not source.fixed_splits:  # a layout's own split is kept as published
                first = seen.setdefault(meta[DIGEST_KEY], job.key)
                if first != job.key:
                    roll, meta = None, f"{DUPLICATE_REASON} {first}"
            if roll is None and request.strict:
                raise UserError(f"{job.key}: {meta} (--strict stops at the first skipped file)")
            writer.add(job.key, roll, meta, job.split)
            bar.update(1)
            bar.set_postfix(pieces=writer.pieces, skipped=writer.failed, refresh=False)
    except UserError:
        writer.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        bar.close()
        writer.close()  # flushed, so that --resume continues after an interrupt too
    if writer.pieces == 0:
        reasons = _reason_counts(writer)
        shutil.rmtree(partial, ignore_errors=True)
        if not reasons:
            raise UserError(f"no MIDI files (.mid/.midi) found in {source.root}")
        listed = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common(MAX_REASONS_SHOWN))
        raise UserError(f"no usable piece in {source.root}: all {sum(reasons.values())} files were skipped ({listed})")
    return _finish(writer, source.fixed_splits, ratios, request, settings)


def _digests(writer: CacheWriter) -> dict[str, str]:
    """Content digest -> first key, from the journal of a resumed run (duplicates stay duplicates)."""
    seen: dict[str, str] = {}
    if writer.done_keys:
        for record in writer.records():
            digest = record.get("meta", {}).get(DIGEST_KEY) if record.get("ok") else None
            if digest:
                seen.setdefault(digest, record["key"])
    return seen


def _reason_counts(writer: CacheWriter) -> Counter:
    """How many files were skipped for each reason (the file-specific tail of a reason cut off)."""
    return Counter(str(r["reason"]).split(" (")[0].split(": ")[0] for r in writer.records() if not r["ok"])


@contextlib.contextmanager
def _claim_output(out: Path, partial: Path, request: PrepareRequest, settings: dict) -> Iterator[bool]:
    """Check ``out`` and take ``partial`` (locked while this run writes it); yields False when
    ``--resume`` finds OUT complete. Never replaces a folder fractalmidi did not make."""
    if request.resume:
        if not partial.exists() and (out / MANIFEST_FILE).is_file():
            yield False
            return
        if partial.exists() and out.is_dir() and any(out.iterdir()):
            raise UserError(f"{out} already exists and {partial} holds an older unfinished run; --resume never "
                            f"replaces a finished folder: delete {partial.name} to keep {out.name}, or pass "
                            f"--overwrite to prepare again")
    check_out_dir(out, request.overwrite)
    if partial.exists():
        if not partial.is_dir() or not is_ours(partial):
            raise UserError(f"{partial} exists and was not made by fractalmidi prepare; move it away or choose "
                            f"another --out")
        if not request.overwrite and not request.resume:
            raise UserError(f"{partial} already exists (an unfinished run): pass --resume to continue it or "
                            f"--overwrite to start again")
    with _locked(partial):
        if request.resume and not (partial / JOURNAL_FILE).exists() and (out / MANIFEST_FILE).is_file():
            with contextlib.suppress(OSError):
                partial.rmdir()  # another run finished OUT while we waited: nothing of ours to resume
            yield False
            return
        if request.overwrite:
            check_replaceable(partial, "--out's work folder")
            clear_folder(partial)
        elif request.resume:
            saved = _read_settings(partial)
            differ = [k for k in RESUME_KEYS if saved and saved.get(k) != settings[k]]
            if differ:
                raise UserError(f"--resume with different settings ({', '.join(differ)}) than the run in {partial}; "
                                f"use --overwrite")
        write_marker(partial, "prepare", PARTIAL_ENTRIES)
        write_json(partial / SETTINGS_FILE, settings)
        yield True


@contextlib.contextmanager
def _locked(partial: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ``partial`` folder itself (created if missing): a second
    ``prepare`` on the same run stops with a clear error instead of interleaving writes. The lock
    moves with the folder when it is published, and the kernel drops it if this process dies."""
    import fcntl

    partial.mkdir(parents=True, exist_ok=True)
    handle = os.open(partial, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another 'fractalmidi prepare' is writing {partial} right now; "
                            f"wait for it to finish") from None
        yield
    finally:
        os.close(handle)


def _read_settings(partial: Path) -> dict:
    import json

    path = partial / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _finish(writer: CacheWriter, fixed_splits: bool, ratios, request: PrepareRequest, settings: dict) -> dict[str, Any]:
    import numpy as np

    failed: list[dict] = []
    fixed: list[int] = []
    groups: list[str] = []
    total_steps = 0
    duplicates = 0
    for record in writer.records():
        if record["ok"]:
            fixed.append(SPLIT_CODES.get(record.get("split") or "", 0))
            groups.append(group_key(record["key"]))
            total_steps += record["steps"]
        else:
            failed.append({"path": record["key"], "reason": record["reason"]})
            duplicates += str(record["reason"]).startswith(DUPLICATE_REASON)
    if fixed_splits:
        codes = np.asarray(fixed, dtype=np.int64)
    else:  # pieces sharing a name stem (melody/x.mid, chords/x.mid) land in one split
        codes = assign_splits(len(fixed), ratios, request.min_split_count, request.seed, groups=groups)
    manifest = {
        "format": format_tag(),
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pieces": writer.pieces,
        "failed": failed,
        "duplicates": duplicates,
        "splits": {name: int(np.sum(codes == SPLIT_CODES[name])) for name in SPLITS},
        "grid": settings["grid"],
        "total_steps": total_steps,
        "settings": {**settings, "split_source": "layout" if fixed_splits else "seeded ratios"},
        "files": {"rolls": ROLLS_FILE, "rolls_layout": "time-major uint8 frames (T_i, 128) concatenated; "
                  "cell = velocity | 0x80 at a note onset",
                  "index_columns": list(INDEX_COLUMNS)},
    }
    writer.finalize(codes, manifest)
    return manifest
