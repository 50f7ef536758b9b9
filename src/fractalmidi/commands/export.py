"""``fractalmidi export RUN OUT.ckpt``: a slim inference checkpoint of a trained run (see
:func:`fractalmidi.train.export.export_generator`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN|CKPT", help="a run folder (its last.ckpt) or a checkpoint")
    parser.add_argument("out", metavar="OUT.ckpt", type=Path, help="the slim checkpoint to write")
    parser.add_argument("--half", action="store_true", help="store weights as fp16 (half the size; loaded as fp32)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.ckpt if it exists")


def run(args: argparse.Namespace) -> int:
    from fractalmidi.outdir import check_out_file
    from fractalmidi.train.checkpoint import resolve_checkpoint
    from fractalmidi.train.export import export_generator

    check_out_file(args.out, args.overwrite, [resolve_checkpoint(args.run)], "OUT.ckpt")  # never over the source
    size = export_generator(args.run, args.out, half=args.half)
    print(f"{args.out}: {size / 2**20:.2f} MiB")
    return 0
