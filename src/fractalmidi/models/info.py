"""``fractalmidi info PRESET``: parameter counts per part and in total."""

from __future__ import annotations

import argparse

from fractalmidi.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", nargs="?", help="model preset name (omit to list all presets)")


def run(args: argparse.Namespace) -> int:
    from fractalmidi.models import available, build

    if not args.preset:
        for name in available():
            print(name)
        return 0
    try:
        model = build(args.preset)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    rows = model.parameter_table()
    total = sum(p.numel() for p in model.parameters())
    width = max([len(name) for name, _ in rows] + [len("total")])
    print(f"{args.preset} ({model.family})")
    for name, count in rows:
        print(f"  {name:<{width}}  {count:>13,}")
    print(f"  {'total':<{width}}  {total:>13,}")
    return 0
