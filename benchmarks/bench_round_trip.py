"""Round-trip fidelity of the note-code roll: MIDI -> roll -> MIDI against the grid-quantised source.

Two sets: every POP909 song (piano with dynamics, several tracks merged) and constant-velocity
folk reels from music21's Ryan's Mammoth Collection (written to MIDI first). Per set: note F1
against the quantised notes, and how many attacks a 16th grid cannot keep (a second onset of
one pitch inside one cell, counted by ``quantize_notes``) as a share of the source's notes.
Prints a table and appends it to ``benchmarks/RESULTS.md``.

    python benchmarks/bench_round_trip.py [--reels 150]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fractalmidi.data import round_trip_f1  # noqa: E402
from fractalmidi.data.sources import corpus_paths, corpus_score  # noqa: E402
from fractalmidi.settings import shared_data_dir  # noqa: E402


def measure(name: str, files: list[Path]) -> str:
    rows = [round_trip_f1(path) for path in files]
    f1 = np.array([r["f1"] for r in rows])
    lost = sum(r["collisions"] for r in rows)
    notes = sum(r["source_notes"] for r in rows)
    return (f"| {name} | {len(rows)} | {f1.mean():.4f} | {f1.min():.4f} | {notes} | {lost} ({lost / notes:.2%}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reels", type=int, default=150, help="how many folk reels (default 150)")
    parser.add_argument("--no-results", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    pop909 = sorted((shared_data_dir() / "pop909").glob("*.mid"))
    lines = ["| set | files | note F1 mean | F1 min | source notes | attacks lost to one cell |",
             "|---|---|---|---|---|---|"]
    if pop909:
        lines.append(measure("POP909", pop909))
    with tempfile.TemporaryDirectory() as tmp:
        reels = []
        for path in [p for p in corpus_paths("folk") if "Reel" in p.name][: args.reels]:
            out = Path(tmp) / f"{path.stem}.mid"
            corpus_score(path).dump_midi(out)
            reels.append(out)
        lines.append(measure("folk reels (music21)", reels))
    text = "\n".join(lines)
    print(text)
    if not args.no_results:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as handle:
            handle.write(f"\n## Round trip of the note-code roll ({stamp})\n\nMachine: {platform.machine()}, "
                         f"{os.cpu_count()} CPUs (timing-free). Command: `python benchmarks/bench_round_trip.py "
                         f"{' '.join(sys.argv[1:])}`.\n\n{text}\n")


if __name__ == "__main__":
    main()
