"""``fractalmidi convert IN.mid OUT.mid``: MIDI -> piano-roll -> MIDI, to hear and measure the round trip
(see :mod:`fractalmidi.data.convert`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.data.convert import convert
from fractalmidi.data.grid import DEFAULT_GRID, GRID_HELP
from fractalmidi.data.roll import DEFAULT_MAX_STEPS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.mid", help="MIDI file to read")
    parser.add_argument("output", metavar="OUT.mid", help="MIDI file to write (from the piano-roll)")
    parser.add_argument("--grid", default=DEFAULT_GRID, help=f"time grid: {GRID_HELP} (default {DEFAULT_GRID})")
    parser.add_argument("--sustain", action="store_true", help="extend notes held by the sustain pedal (CC64)")
    parser.add_argument("--tempo", type=float, help="tempo of the output in BPM (default: the input's first tempo)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help=f"longest roll accepted (default {DEFAULT_MAX_STEPS})")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.mid if it exists")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    trip = convert(args.input, out, grid=args.grid, sustain=args.sustain, tempo=args.tempo, max_steps=args.max_steps,
                   overwrite=args.overwrite)
    meta, scores = trip.meta, trip.scores
    print(
        f"{args.input}: {meta['source_notes']} notes -> roll (1, 128, {trip.steps}) of {meta['notes']} notes on "
        f"{meta['grid']} "
        f"(grid offset {meta['grid_offset_steps']:+.2f} steps, beat moved {meta['beat_shift_steps']} steps later; "
        f"on-grid {meta['on_grid_raw']:.0%} -> "
        f"{meta['on_grid']:.0%}) "
        f"-> {out}: onset F1 {scores['f1']:.4f} (precision {scores['precision']:.4f}, recall {scores['recall']:.4f}); "
        f"{meta['collisions']} onset(s) lost to a second attack of the same pitch in one grid cell"
    )
    return 0
