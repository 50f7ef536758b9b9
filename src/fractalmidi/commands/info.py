"""``fractalmidi info [PRESET]``: the presets, or one preset's parameters and options (see
:mod:`fractalmidi.models.info`)."""

from __future__ import annotations

import argparse

from fractalmidi.models.info import describe, preset_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", nargs="?", help="model preset name (omit to list all presets)")


def run(args: argparse.Namespace) -> int:
    print("\n".join(describe(args.preset) if args.preset else preset_list()))
    return 0
