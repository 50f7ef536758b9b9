"""``fractalmidi demo``: the whole loop on the Bach chorales bundled with music21, on a CPU (see
:mod:`fractalmidi.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.demo import DEFAULT_MINUTES, DEFAULT_OUT, NUM_UNCONDITIONAL, UNCONDITIONAL_LENGTH, run_demo, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"training time budget in minutes (default {DEFAULT_MINUTES:g})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT}/; a previous demo there is replaced)")
    parser.add_argument("--data", type=Path,
                        help="use this prepared data folder instead of preparing the Bach chorales")
    parser.add_argument("--length", type=int, default=UNCONDITIONAL_LENGTH,
                        help=f"steps of each composed piece, of the kept opening and of the continuation (default "
                             f"{UNCONDITIONAL_LENGTH})")
    parser.add_argument("--num-samples", type=int, default=NUM_UNCONDITIONAL,
                        help=f"composed pieces, evaluated against the test split (default {NUM_UNCONDITIONAL})")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and sampling (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out that fractalmidi made but is not a previous demo")


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.out, args.minutes, data=args.data, length=args.length, num_samples=args.num_samples,
                      seed=args.seed, overwrite=args.overwrite)
    print(summary(result))
    return 0
