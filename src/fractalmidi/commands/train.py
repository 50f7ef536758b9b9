"""``fractalmidi train CONFIG.yaml [section.key=value ...] [--resume RUN_DIR|CKPT] [--overwrite]``."""

from __future__ import annotations

import argparse

INTERMIXED = True
"""Overrides may come before and after the options (``CONFIG a=1 --resume RUN b=2``)."""
SUMMARY_METRICS = ("train/loss", "val/loss")
EPILOG = """\
examples:
  fractalmidi train configs/fractal_tiny.yaml data.root=data/jsb logging.output_dir=runs/tiny
  fractalmidi train configs/jit_tiny.yaml data.root=data/jsb training.max_steps=500 hardware.precision=bf16-mixed
  fractalmidi train --resume runs/tiny training.max_steps=2000      # continue exactly where it stopped
  fractalmidi train configs/fractal_128x512.yaml data.root=DATA hardware.devices=4 hardware.strategy=ddp

sections: model (name = preset from 'fractalmidi info', other keys = preset options), data, training,
hardware, logging. Values are read as YAML (1e-4, true, [0.9, 0.95], null).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("config", nargs="?",
                        help="YAML config or preset name (see configs/, fractalmidi info); optional with --resume")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="dotted config overrides")
    parser.add_argument("--resume", metavar="RUN_DIR|CKPT",
                        help="continue a run (its last.ckpt) or a given checkpoint: model, EMA, optimizer, "
                             "schedule, step and data position")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty run folder")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from fractalmidi.train.config import dump_yaml
    from fractalmidi.train.runner import launcher_rank_zero, plan, train

    config_path, overrides = args.config, list(args.overrides)
    if config_path is not None and "=" in config_path:  # `--resume RUN key=value`: no config file given
        config_path, overrides = None, [config_path, *overrides]
    job = plan(config_path, overrides, resume=args.resume, overwrite=args.overwrite)
    if args.print_config:
        print(dump_yaml(job.config), end="")
        return 0
    result = train(job)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()) if k in SUMMARY_METRICS)
    where = "" if job.config.training.fast_dev_run else f"; run folder: {result.run_dir}"
    if launcher_rank_zero():  # one summary line, not one per DDP process
        print(f"trained to step {result.global_step} ({summary}){where}")
        if result.fresh:
            print(f"training.init_from: {len(result.fresh)} parameter(s) started from their initial values "
                  f"(the source has none): {', '.join(result.fresh)}")
    return 0
