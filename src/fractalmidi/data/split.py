"""Seeded train/valid/test splits from ratios, with a minimum count per split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fractalmidi.errors import UserError

DEFAULT_SPLIT = "0.8,0.1,0.1"
DEFAULT_MIN_SPLIT_COUNT = 1
"""Ratios like POP909's 99.8/0.1/0.1 would leave a split empty; each non-zero ratio gets at least this."""


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"TRAIN,VALID,TEST"`` -> normalised ratios (need not sum to 1)."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise UserError(f"--split must be three non-negative ratios TRAIN,VALID,TEST (e.g. {DEFAULT_SPLIT}), got "
                        f"{text!r}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_counts(n: int, ratios: tuple[float, float, float], min_count: int) -> tuple[int, int, int]:
    """Piece counts per split: rounded ratios, each non-zero ratio raised to ``min_count``,
    train taking the rest. With too few pieces, train's minimum is served first, then valid, then test."""
    wanted = [max(min_count, round(n * r)) if r > 0 else 0 for r in ratios]
    reserve = min(n, min_count) if ratios[0] > 0 else 0
    valid = min(wanted[1], n - reserve)
    test = min(wanted[2], n - reserve - valid)
    return n - valid - test, valid, test


def assign_splits(n: int, ratios: tuple[float, float, float], min_count: int, seed: int,
                  groups: Sequence[str] | None = None) -> np.ndarray:
    """Split codes (0 train, 1 valid, 2 test) for ``n`` pieces, a seeded random assignment.

    With ``groups`` (a name per piece), pieces of one group share a split: groups are dealt in a
    seeded order to valid until it holds its count, then to test, the rest to train. With one
    piece per group this is the same assignment as without groups.
    """
    _, valid, test = split_counts(n, ratios, min_count)
    codes = np.zeros(n, dtype=np.int64)
    if groups is None:
        order = np.random.default_rng(seed).permutation(n)
        codes[order[:valid]] = 1
        codes[order[valid : valid + test]] = 2
        return codes
    index: dict[str, int] = {}  # groups numbered in order of first appearance
    members = np.asarray([index.setdefault(name, len(index)) for name in groups], dtype=np.int64)
    sizes = np.bincount(members, minlength=len(index))
    group_codes = np.zeros(len(index), dtype=np.int64)
    filled = {1: 0, 2: 0}
    for g in np.random.default_rng(seed).permutation(len(index)):
        for code, wanted in ((1, valid), (2, test)):
            if filled[code] < wanted:
                group_codes[g] = code
                filled[code] += int(sizes[g])
                break
    return group_codes[members]
