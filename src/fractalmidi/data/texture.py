"""Texture: how many voices the training music sounds at once.

A melody sounds one pitch at a time and a chorale four; a pixel-space model trained for minutes
hedges between neighbouring pitches, and a threshold on its output then writes stray second
voices into a melody (folk: 1.2 voices against the data's 1.01) or drops notes of a chord. Where
most sounding steps of the training music hold the same number of pitches, that number is the
music's *fixed voice count*, and a sampler can keep each step's strongest pitches up to it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fractalmidi.data.roll import NUM_PITCHES

AUTO_VOICES = -1
"""A sampler's voice cap of this value is set when training starts, to the training music's :func:`fixed_voices`."""
FIXED_TEXTURE_SHARE = 0.5
"""A voice count held by at least this share of the sounding steps is the music's fixed voice count: a folk
melody's 1 holds 99% of its steps, a chorale's 4 holds 85-90%; POP909's most common count (4) only 24%."""


def voice_histogram(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Sounding steps by number of pitches sounding at once (index 0: silent steps) over ``(T, 128)`` code
    arrays (e.g. slices of :attr:`PreparedData.frames`)."""
    counts = np.zeros(NUM_PITCHES + 1, dtype=np.int64)
    for part in frames:
        counts += np.bincount((np.asarray(part) > 0).sum(axis=1), minlength=NUM_PITCHES + 1)
    return counts


def fixed_voices(histogram: np.ndarray) -> int:
    """The fixed voice count of music with this :func:`voice_histogram`, or 0 when it has none (its most
    common count holds under :data:`FIXED_TEXTURE_SHARE` of the sounding steps, or nothing sounds)."""
    sounding = np.asarray(histogram)[1:]
    total = int(sounding.sum())
    if total == 0:
        return 0
    mode = int(sounding.argmax())
    return mode + 1 if sounding[mode] >= FIXED_TEXTURE_SHARE * total else 0
