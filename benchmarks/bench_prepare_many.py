"""Benchmark ``fractalmidi prepare`` on a generated tree of many tiny MIDI files (issue 12, case 18).

The goal: 200,000 small files prepare with peak memory <= 500 MB for the prepare process and all
its workers together, at >= 500 files/s with 2 workers. The tree (``--files`` files of a few
random notes each, 1000 per folder) is generated once under ``--tree`` (default in /tmp, never in
the repository) and reused. Peak RSS is sampled from /proc over the whole process tree (see
``bench_prepare.py``); the machine's load average before and after is recorded, since the
machine may be shared. Prints a table and, with ``--append``, adds it to benchmarks/RESULTS.md.

    nice -n 10 .venv/bin/python benchmarks/bench_prepare_many.py [--files 200000] [--workers 2] [--append]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from bench_prepare import MACHINE, RESULTS, measure_table, run_prepare

FILES_PER_FOLDER = 1000
NOTES_PER_FILE = 8
TICKS_PER_QUARTER = 480
TICKS_PER_SIXTEENTH = TICKS_PER_QUARTER // 4
TEMPO_US = 500_000
GOAL_FILES_PER_S = 500
GOAL_PEAK_MB = 500


def _varlen(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def tiny_midi(rng: np.random.Generator) -> bytes:
    """A format-0 file: a tempo and ``NOTES_PER_FILE`` random notes one after another on 16ths."""
    events = b"\x00\xff\x51\x03" + TEMPO_US.to_bytes(3, "big")
    for _ in range(NOTES_PER_FILE):
        pitch, velocity = int(rng.integers(36, 96)), int(rng.integers(30, 127))
        length = int(rng.integers(1, 5)) * TICKS_PER_SIXTEENTH
        events += b"\x00" + bytes([0x90, pitch, velocity]) + _varlen(length) + bytes([0x80, pitch, 0])
    events += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


def make_tree(root: Path, files: int, seed: int = 0) -> Path:
    """``files`` tiny MIDI files in folders of ``FILES_PER_FOLDER``; reused when already complete."""
    done = root / f".complete-{files}"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for i in range(files):
        folder = root / f"d{i // FILES_PER_FOLDER:04d}"
        if i % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07d}.mid").write_bytes(tiny_midi(rng))
    done.write_text("")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "fractalmidi_bench_many")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    tree = make_tree(args.tree / f"tree{args.files}", args.files)
    out = args.tree / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    load_before = os.getloadavg()
    seconds, peak_kib, manifest = run_prepare(tree, out, args.workers, None)
    load_after = os.getloadavg()
    shutil.rmtree(out, ignore_errors=True)
    rate, peak_mb = args.files / seconds, peak_kib * 1024 / 1e6
    rows = [
        ("files", f"{args.files} ({manifest['pieces']} prepared, {len(manifest['failed'])} skipped, "
                  f"{manifest.get('duplicates', 0)} duplicates)"),
        (f"prepare --workers {args.workers}: wall time", f"{seconds:.1f} s"),
        ("files/s (incl. start-up)",
         f"{rate:.0f} (goal >= {GOAL_FILES_PER_S}: {'met' if rate >= GOAL_FILES_PER_S else 'NOT met'})"),
        ("peak RSS, prepare + workers",
         f"{peak_mb:.0f} MB (goal <= {GOAL_PEAK_MB}: {'met' if peak_mb <= GOAL_PEAK_MB else 'NOT met'})"),
        ("load average (1 min) before / after", f"{load_before[0]:.1f} / {load_after[0]:.1f}"),
    ]
    table = measure_table(rows)
    print(table)
    if not args.append:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## prepare: {args.files} tiny generated MIDI files ({stamp})\n\nMachine: {MACHINE}, shared "
               f"(load above). Command: `nice -n 10 .venv/bin/python benchmarks/bench_prepare_many.py --files "
               f"{args.files} --workers {args.workers} --append`\n\n{table}\n")
    with open(RESULTS, "a") as handle:
        handle.write(section)
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
