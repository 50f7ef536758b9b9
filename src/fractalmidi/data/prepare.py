"""``fractalmidi prepare``: a MIDI folder or known dataset -> cached piano-rolls, splits, manifest.

The output is built in ``OUT.partial`` (journaled, so ``--resume`` continues a killed run) and
renamed to ``OUT`` when complete. Bad files are skipped with their reason in the manifest.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fractalmidi import __version__
from fractalmidi.data.cache import (
    INDEX_COLUMNS,
    MANIFEST_FILE,
    ROLLS_FILE,
    SPLIT_CODES,
    CacheWriter,
    format_tag,
    write_json_atomic,
)
from fractalmidi.data.grid import GRID_HELP, parse_grid
from fractalmidi.data.pool import CrashedJob, run_ordered
from fractalmidi.data.roll import DEFAULT_MAX_STEPS
from fractalmidi.data.sources import (
    DATASETS,
    LAYOUT_DEFAULT_GRID,
    LAYOUT_FIXED_GRID,
    LAYOUTS,
    SPLITS,
    convert_job,
    open_source,
)
from fractalmidi.data.split import DEFAULT_MIN_SPLIT_COUNT, DEFAULT_SPLIT, assign_splits, parse_ratios
from fractalmidi.errors import UserError

PARTIAL_SUFFIX = ".partial"
SETTINGS_FILE = "settings.json"
RESUME_KEYS = ("layout", "root", "grid", "sustain", "max_steps")
"""Settings that must match for ``--resume`` to append to an earlier run."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", nargs="?", metavar="SRC", help="folder of MIDI files (searched recursively) or a known dataset folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the prepared data")
    parser.add_argument("--layout", default="auto", choices=LAYOUTS,
                        help="folder layout (default: auto = jsb if Jsb16thSeparated.json, pop909 for NNN.mid songs, else midi-dir; "
                             "jsb-quarter = the quarter-note JSB benchmark file)")
    parser.add_argument("--dataset", choices=DATASETS, help="a dataset bundled with music21 instead of SRC: bach = its Bach chorales, folk = the fiddle tunes of Ryan's Mammoth Collection")
    parser.add_argument("--grid", help=f"time grid: {GRID_HELP} (default: 16th; fps:16 for aria)")
    parser.add_argument("--sustain", action="store_true", help="extend notes held by the sustain pedal (CC64)")
    parser.add_argument("--split", default=DEFAULT_SPLIT, metavar="TRAIN,VALID,TEST",
                        help=f"split ratios (default {DEFAULT_SPLIT}; the jsb layout keeps its own 229/76/77)")
    parser.add_argument("--min-split-count", type=int, default=DEFAULT_MIN_SPLIT_COUNT, metavar="N",
                        help=f"at least N pieces in every split with a non-zero ratio (default {DEFAULT_MIN_SPLIT_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parser processes (default: all cores; 0 = in this process, no crash protection)")
    parser.add_argument("--max-steps-per-piece", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                        help=f"skip pieces longer than N steps, checked before allocating (default {DEFAULT_MAX_STEPS})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    group.add_argument("--resume", action="store_true", help="continue a killed run (or stop if OUT is complete)")
    parser.add_argument("--strict", action="store_true", help="stop with exit code 2 at the first skipped file")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if args.max_steps_per_piece < 1:
        raise UserError(f"--max-steps-per-piece must be a positive number of steps, got {args.max_steps_per_piece}")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0 (0 = parse in this process), got {args.workers}")
    if args.min_split_count < 0:
        raise UserError(f"--min-split-count must be >= 0, got {args.min_split_count}")
    ratios = parse_ratios(args.split)
    source = open_source(args.src, layout=args.layout, dataset=args.dataset)
    grid = parse_grid(args.grid or LAYOUT_DEFAULT_GRID[source.layout])
    fixed = LAYOUT_FIXED_GRID.get(source.layout)
    if fixed is not None and grid.name != fixed:
        raise UserError(f"the {source.layout} layout exists only on the {fixed} grid, got --grid {grid.name}")
    settings = {
        "layout": source.layout, "root": source.root, "grid": grid.name, "sustain": bool(args.sustain),
        "max_steps": args.max_steps_per_piece, "split": list(ratios), "min_split_count": args.min_split_count,
        "seed": args.seed, "workers": args.workers,
    }
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    if not _claim_output(out, partial, args, settings):
        return 0
    writer = CacheWriter(partial)
    jobs = (job for job in source.jobs if job.key not in writer.done_keys)
    bar = tqdm(total=source.total, initial=len(writer.done_keys), unit="file", desc="prepare", dynamic_ncols=True)
    try:
        for job, result in run_ordered(convert_job, jobs, (grid.name, args.sustain, args.max_steps_per_piece), args.workers):
            roll, meta = (None, result.reason) if isinstance(result, CrashedJob) else result
            if roll is None and args.strict:
                writer.close()
                shutil.rmtree(partial, ignore_errors=True)
                raise UserError(f"{job.key}: {meta} (--strict stops at the first skipped file)")
            writer.add(job.key, roll, meta, job.split)
            bar.update(1)
            bar.set_postfix(pieces=writer.pieces, skipped=writer.failed, refresh=False)
    finally:
        bar.close()
        writer.close()  # flushed, so that --resume continues after an interrupt too
    if writer.pieces + writer.failed == 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"no MIDI files (.mid/.midi) found in {source.root}")
    manifest = _finish(writer, source.fixed_splits, ratios, args, settings)
    _publish(partial, out)
    print(f"prepared {manifest['pieces']} pieces ({manifest['total_steps']} steps, splits "
          f"{manifest['splits']}), skipped {len(manifest['failed'])} -> {out}")
    return 0


def _claim_output(out: Path, partial: Path, args: argparse.Namespace, settings: dict) -> bool:
    """Refuse or clear existing output; returns False when ``--resume`` finds OUT complete."""
    if args.overwrite:
        shutil.rmtree(partial, ignore_errors=True)
    elif args.resume:
        if not partial.exists() and (out / MANIFEST_FILE).is_file():
            print(f"{out} is already complete; nothing to resume")
            return False
        if partial.exists():
            saved = _read_settings(partial)
            differ = [k for k in RESUME_KEYS if saved.get(k) != settings[k]]
            if differ:
                raise UserError(f"--resume with different settings ({', '.join(differ)}) than the run in {partial}; use --overwrite")
    else:
        for existing in (out, partial):
            if existing.exists():
                raise UserError(f"{existing} already exists: pass --overwrite to replace it or --resume to continue")
    partial.mkdir(parents=True, exist_ok=True)
    write_json_atomic(partial / SETTINGS_FILE, settings)
    return True


def _read_settings(partial: Path) -> dict:
    import json

    path = partial / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _finish(writer: CacheWriter, fixed_splits: bool, ratios, args: argparse.Namespace, settings: dict) -> dict[str, Any]:
    import numpy as np

    failed: list[dict] = []
    fixed: list[int] = []
    total_steps = 0
    for record in writer.records():
        if record["ok"]:
            fixed.append(SPLIT_CODES.get(record.get("split") or "", 0))
            total_steps += record["steps"]
        else:
            failed.append({"path": record["key"], "reason": record["reason"]})
    if fixed_splits:
        codes = np.asarray(fixed, dtype=np.int64)
    else:
        codes = assign_splits(len(fixed), ratios, args.min_split_count, args.seed)
    manifest = {
        "format": format_tag(),
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pieces": writer.pieces,
        "failed": failed,
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


def _publish(partial: Path, out: Path) -> None:
    """Swap the finished folder into place (an old OUT is removed only after the rename)."""
    (partial / SETTINGS_FILE).unlink(missing_ok=True)
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)
