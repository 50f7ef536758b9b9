"""``fractalmidi prepare``: a MIDI folder or known dataset -> cached piano-rolls, splits, manifest
(see :mod:`fractalmidi.data.prepare`)."""

from __future__ import annotations

import argparse

from fractalmidi.data.grid import GRID_HELP
from fractalmidi.data.prepare import PrepareRequest, default_workers, prepare
from fractalmidi.data.roll import DEFAULT_MAX_STEPS
from fractalmidi.data.sources import DATASETS, LAYOUTS
from fractalmidi.data.split import DEFAULT_MIN_SPLIT_COUNT, DEFAULT_SPLIT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", nargs="?", metavar="SRC",
                        help="folder of MIDI files (searched recursively) or a known dataset folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the prepared data")
    parser.add_argument("--layout", default="auto", choices=LAYOUTS,
                        help="folder layout (default: auto = jsb if Jsb16thSeparated.json, pop909 for NNN.mid songs, "
                             "else midi-dir; "
                             "jsb-quarter = the quarter-note JSB benchmark file)")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="a dataset bundled with music21 instead of SRC: bach = its Bach chorales, folk = the "
                             "fiddle tunes of Ryan's Mammoth Collection")
    parser.add_argument("--grid", help=f"time grid: {GRID_HELP} (default: 16th; fps:16 for aria)")
    parser.add_argument("--sustain", action="store_true", help="extend notes held by the sustain pedal (CC64)")
    parser.add_argument("--split", default=DEFAULT_SPLIT, metavar="TRAIN,VALID,TEST",
                        help=f"split ratios (default {DEFAULT_SPLIT}; the jsb layout keeps its own 229/76/77)")
    parser.add_argument("--min-split-count", type=int, default=DEFAULT_MIN_SPLIT_COUNT, metavar="N",
                        help=f"at least N pieces in every split with a non-zero ratio (default "
                             f"{DEFAULT_MIN_SPLIT_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="parser processes (default: all cores; 0 = in this process, no crash protection)")
    parser.add_argument("--max-steps-per-piece", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                        help=f"skip pieces longer than N steps, checked before allocating "
                             f"(default {DEFAULT_MAX_STEPS})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    group.add_argument("--resume", action="store_true", help="continue a killed run (or stop if OUT is complete)")
    parser.add_argument("--strict", action="store_true", help="stop with exit code 2 at the first skipped file")


def run(args: argparse.Namespace) -> int:
    result = prepare(PrepareRequest(
        out=args.out, src=args.src, layout=args.layout, dataset=args.dataset, grid=args.grid, sustain=args.sustain,
        split=args.split, min_split_count=args.min_split_count, seed=args.seed, workers=args.workers,
        max_steps_per_piece=args.max_steps_per_piece, overwrite=args.overwrite, resume=args.resume,
        strict=args.strict,
    ))
    print(result.summary())
    return 0
