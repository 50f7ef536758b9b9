"""``fractalmidi models``: list the models shipped in the package (see :mod:`fractalmidi.pretrained`)."""

from __future__ import annotations

import argparse

from fractalmidi import pretrained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "The models shipped with fractalmidi: use one with 'fractalmidi generate --model NAME'."


def run(args: argparse.Namespace) -> int:
    names = pretrained.shipped()
    if not names:
        print("no shipped models in this installation")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {pretrained.summary(name)}")
    print(f"\nmodel cards: {pretrained.PRETRAINED_DIR}/NAME{pretrained.CARD_SUFFIX}")
    return 0
