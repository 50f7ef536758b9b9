"""Random generation masks for training one JiT checkpoint on every generation mode.

A mask is a bool tensor ``(1, 128, T)``, True = pixel to generate (the model contract's
convention). Kinds, each a mode of ``fractalmidi generate``:

- ``none``: generate everything (unconditional);
- ``prefix``: the first ``k`` steps are known (continuation);
- ``span``: a time span ``[a, b)`` is generated, the rest known (inpainting);
- ``band``: a pitch band ``[lo, hi)`` inside a time span is generated (rewrite a part);
- ``patches``: a random subset of ``p x p`` cells is generated (scattered holes).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fractalmidi.models.base import NUM_PITCHES

MASK_KINDS = ("none", "prefix", "span", "band", "patches")
DEFAULT_MASK_PROBS = {"none": 0.4, "prefix": 0.2, "span": 0.2, "band": 0.1, "patches": 0.1}
"""Unconditional generation stays the most common case; the rest share the remainder."""
PATCH_FRACTION_RANGE = (0.1, 0.9)
"""The share of cells a ``patches`` mask generates is drawn uniformly from this range."""
FULL_SPAN_PROB = 0.5
"""How often a ``band`` mask covers the whole length rather than a time span."""


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _span(length: int, generator: torch.Generator | None) -> tuple[int, int]:
    """A random span ``[a, b)`` with ``1 <= b - a <= length - 1`` (something stays known)."""
    size = _randint(1, max(length - 1, 1), generator)
    start = _randint(0, length - size, generator)
    return start, start + size


def make_mask(kind: str, length: int, *, patch_size: int = 16,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One random mask ``(1, 128, length)`` of ``kind`` (see the module docstring)."""
    mask = torch.zeros(1, NUM_PITCHES, length, dtype=torch.bool)
    if kind == "none" or length < 2:
        mask[:] = True
    elif kind == "prefix":
        mask[..., _randint(1, length - 1, generator):] = True
    elif kind == "span":
        start, end = _span(length, generator)
        mask[..., start:end] = True
    elif kind == "band":
        low = _randint(0, NUM_PITCHES - 2, generator)
        high = _randint(low + 1, NUM_PITCHES - 1, generator)
        start, end = (0, length) if _uniform(generator) < FULL_SPAN_PROB else _span(length, generator)
        mask[:, low:high, start:end] = True
    elif kind == "patches":
        if length % patch_size:
            raise ValueError(f"length {length} is not a multiple of the patch size {patch_size}")
        low, high = PATCH_FRACTION_RANGE
        fraction = low + (high - low) * _uniform(generator)
        cells = torch.rand(NUM_PITCHES // patch_size, length // patch_size, generator=generator) < fraction
        mask[0] = cells.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)
    else:
        raise ValueError(f"unknown mask kind {kind!r}; accepted: {', '.join(MASK_KINDS)}")
    return mask


def check_mask_probs(probs: Mapping[str, float]) -> dict[str, float]:
    """Validate kind -> probability (missing kinds count as 0) and normalise to sum 1."""
    unknown = sorted(set(probs) - set(MASK_KINDS))
    if unknown:
        raise ValueError(f"unknown mask kinds {unknown}; accepted: {', '.join(MASK_KINDS)}")
    if any(p < 0 for p in probs.values()) or sum(probs.values()) <= 0:
        raise ValueError(f"mask probabilities must be >= 0 with a positive sum, got {dict(probs)}")
    total = float(sum(probs.values()))
    return {kind: float(probs.get(kind, 0.0)) / total for kind in MASK_KINDS}


def draw_masks(batch: int, length: int, probs: Mapping[str, float], *, patch_size: int = 16,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch`` masks ``(batch, 1, 128, length)``, each of a kind drawn with ``probs``."""
    weights = torch.tensor([probs.get(kind, 0.0) for kind in MASK_KINDS], dtype=torch.float)
    kinds = torch.multinomial(weights, batch, replacement=True, generator=generator)
    return torch.stack([make_mask(MASK_KINDS[int(k)], length, patch_size=patch_size, generator=generator)
                        for k in kinds])
