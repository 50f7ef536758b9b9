"""``fractalmidi evaluate``: how close is a generated set to a reference set? (see :mod:`fractalmidi.evaluate`)"""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.evaluate import DEFAULT_NLL_BATCH, DEFAULT_NLL_STEPS, REPORT_MD, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generated", required=True, type=Path,
                        help="folder of generated MIDI (e.g. a 'fractalmidi generate' --out)")
    parser.add_argument(
        "--reference", required=True, type=Path,
        help="folder of MIDI files, or a prepared data folder (its test split; train-vs-test is the ceiling)",
    )
    parser.add_argument("--out", required=True, type=Path, help="report folder: report.json, report.md, plots/")
    parser.add_argument("--checkpoint", type=Path,
                        help="checkpoint (.ckpt, run folder or shipped model name): also report NLL (bits/pixel, "
                             "nats/step) when its family has a likelihood")
    parser.add_argument("--max-pieces", type=int, help="evaluate at most this many pieces per set (seeded subsample)")
    parser.add_argument("--nll-steps", type=int, default=DEFAULT_NLL_STEPS,
                        help=f"NLL on the first N steps of each piece (default {DEFAULT_NLL_STEPS})")
    parser.add_argument("--nll-batch-size", type=int, default=DEFAULT_NLL_BATCH,
                        help=f"pieces per NLL batch (default {DEFAULT_NLL_BATCH})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of subsampling and the half-vs-half ceiling split (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")


def run(args: argparse.Namespace) -> int:
    report = evaluate(
        args.generated,
        args.reference,
        args.out,
        checkpoint=args.checkpoint,
        max_pieces=args.max_pieces,
        nll_steps=args.nll_steps,
        nll_batch_size=args.nll_batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    metrics, ceiling = report["metrics"], report["ceiling"]["metrics"]
    print(f"mean OA {_num(metrics['oa_mean'])} (ceiling {_num(ceiling['oa_mean'])}), "
          f"Frechet {_num(metrics['frechet'])} (ceiling {_num(ceiling['frechet'])})")
    print(f"report: {args.out / REPORT_MD}")
    return 0


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
