"""Benchmark ``fractalmidi prepare`` on POP909 against a straightforward pretty_midi conversion.

Measures: wall time, files/s and peak RSS (the prepare process plus its workers, sampled from
/proc) of ``prepare --workers 2``; per-file conversion time in one process for fractalmidi and
for pretty_midi (``PrettyMIDI(path).get_piano_roll(fs)`` on the same 16th grid); round-trip
onset F1 (MIDI -> roll -> MIDI against the grid-quantised source); and the fraction of onsets
within 0.1 of a 16th before / after the grid-offset removal. Prints a table and appends it to
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_prepare.py [--data DIR] [--workers 2] [--limit N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fractalmidi.data import midi_to_roll, round_trip_f1
from fractalmidi.settings import shared_data_dir

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MACHINE = "2-core CPU, no GPU"
SAMPLE_SECONDS = 0.05
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (KiB), read from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * PAGE_KIB
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def run_prepare(src: Path, out: Path, workers: int, limit_files: list[Path] | None) -> tuple[float, int, dict]:
    """Run the CLI, sampling the process tree's memory; returns (seconds, peak KiB, manifest)."""
    import json

    cmd = [sys.executable, "-m", "fractalmidi", "prepare", str(src), "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid))
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed with exit code {proc.returncode}")
    return seconds, peak, json.loads((out / "manifest.json").read_text())


def pretty_midi_seconds(files: list[Path]) -> float:
    """A straightforward conversion: PrettyMIDI + get_piano_roll at 4 frames per beat (first tempo)."""
    import pretty_midi

    start = time.perf_counter()
    for path in files:
        pm = pretty_midi.PrettyMIDI(str(path))
        _, tempi = pm.get_tempo_changes()
        fs = (tempi[0] if len(tempi) else 120.0) / 60.0 * 4
        roll = pm.get_piano_roll(fs=fs)
        assert roll.shape[0] == 128
    return time.perf_counter() - start


def measure_table(rows: list[tuple[str, str]]) -> str:
    """A two-column markdown table (measure, value) with the names padded to one width."""
    width = max(len(name) for name, _ in rows)
    return "\n".join([f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
                     + [f"| {name:<{width}} | {value} |" for name, value in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_data_dir() / "pop909", help="POP909 folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, help="only the first N songs (a quick check; not for RESULTS.md)")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.mid"))[: args.limit]
    if not files:
        raise SystemExit(f"no MIDI files in {args.data}")

    with tempfile.TemporaryDirectory() as tmp:
        src = args.data
        if args.limit:
            src = Path(tmp) / "src"
            src.mkdir()
            for path in files:
                (src / path.name).symlink_to(path)
        seconds, peak_kib, manifest = run_prepare(src, Path(tmp) / "out", args.workers, files)

    start = time.perf_counter()
    for path in files:
        midi_to_roll(path)
    ours_one = time.perf_counter() - start
    theirs_one = pretty_midi_seconds(files)

    fidelity = [round_trip_f1(path) for path in files]
    f1 = np.array([f["f1"] for f in fidelity])
    raw = np.array([f["on_grid_raw"] for f in fidelity])
    after = np.array([f["on_grid"] for f in fidelity])

    rows = [
        ("files", f"{len(files)} ({manifest['pieces']} prepared, {len(manifest['failed'])} skipped)"),
        (f"prepare --workers {args.workers}: wall time",
         f"{seconds:.2f} s ({len(files) / seconds:.0f} files/s, incl. start-up)"),
        ("prepare: peak RSS, process + workers", f"{peak_kib / 1024:.0f} MiB"),
        ("prepared size",
         f"{manifest['total_steps']} steps = {manifest['total_steps'] * 128 / 2**20:.0f} MiB of rolls"),
        ("one process: fractalmidi midi_to_roll", f"{1000 * ours_one / len(files):.2f} ms/file"),
        ("one process: pretty_midi get_piano_roll", f"{1000 * theirs_one / len(files):.2f} ms/file"),
        ("speed-up vs pretty_midi, one process", f"{theirs_one / ours_one:.1f}x"),
        (f"speed-up vs pretty_midi, prepare --workers {args.workers} (wall)", f"{theirs_one / seconds:.1f}x"),
        ("round-trip onset F1: mean / min", f"{f1.mean():.4f} / {f1.min():.4f}"),
        ("onsets within 0.1 of a 16th, raw: median / mean", f"{np.median(raw):.3f} / {raw.mean():.3f}"),
        ("... after offset removal: median / mean", f"{np.median(after):.3f} / {after.mean():.3f}"),
        ("songs under 80% on the grid after removal", f"{int(np.sum(after < 0.8))}"),
    ]
    table = measure_table(rows)
    print(table)
    if args.limit:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## prepare: POP909 ({stamp})\n\nMachine: {MACHINE}. Command: "
               f"`.venv/bin/python benchmarks/bench_prepare.py --workers {args.workers}`\n\n{table}\n")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with open(RESULTS, "a") as handle:
        handle.write(section)
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
