"""Loudness normalisation: train at one loudness, compose at any.

A piece's loudness (the mean velocity of its notes) holds for the whole piece, but a pixel model draws
each note's velocity on its own, so every piece it writes comes out at the training set's mean loudness
(the shipped POP909 model: every piece near velocity 86, against songs from 71 to 100; velocity_mean OA
0.21). Training with every piece moved to one loudness (:data:`LOUDNESS_CENTER`) leaves the model the
dynamics within a piece; the pieces it writes are then moved to a loudness drawn from the training
pieces' own (:func:`draw_loudness`), and an input to continue or rewrite is moved to the centre and back.
Velocities are moved by a constant and clipped to ``1..127``.
"""

from __future__ import annotations

import numpy as np

from fractalmidi.data.draw import pick
from fractalmidi.data.roll import MAX_VELOCITY, ONSET_BIT, VELOCITY_BITS

LOUDNESS_CENTER = 80
"""The loudness every training piece is moved to (mezzo-forte)."""
LOUDNESS_LEVELS = MAX_VELOCITY + 1
"""Loudness counts cover mean velocities ``0..127``."""


def piece_loudness(codes: np.ndarray) -> int | None:
    """Mean velocity of the notes (onset pixels) of uint8 note codes ``(..., 128, T)``; None without notes."""
    codes = np.asarray(codes)
    starts = (codes & ONSET_BIT) > 0
    if not starts.any():
        return None
    return int(np.rint((codes & VELOCITY_BITS)[starts].mean()))


def normalising_move(codes: np.ndarray) -> int:
    """The velocity move that brings a piece to :data:`LOUDNESS_CENTER` (0 without notes)."""
    loudness = piece_loudness(codes)
    return 0 if loudness is None else LOUDNESS_CENTER - loudness


def move_loudness(codes: np.ndarray, move: int) -> np.ndarray:
    """Uint8 note codes with every sounding pixel's velocity moved by ``move``, clipped to ``1..127``."""
    velocity = (codes & VELOCITY_BITS).astype(np.int16)
    moved = np.where(velocity > 0, np.clip(velocity + int(move), 1, MAX_VELOCITY), 0).astype(np.uint8)
    return (codes & ONSET_BIT) | moved


def loudness_histogram(loudness: list[int]) -> list[int]:
    """How many pieces had each loudness ``0..127``."""
    return np.bincount(np.clip(np.asarray(loudness, dtype=np.int64), 0, MAX_VELOCITY),
                       minlength=LOUDNESS_LEVELS).tolist()


def draw_loudness(counts: list[int], quantile: float) -> int:
    """The loudness at ``quantile`` of the training pieces' frequencies (:data:`LOUDNESS_CENTER` without counts)."""
    weights = np.asarray(counts, dtype=np.float64)
    if weights.size != LOUDNESS_LEVELS or weights.sum() <= 0:
        return LOUDNESS_CENTER
    return pick(weights, quantile)
