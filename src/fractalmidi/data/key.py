"""Key normalisation: train in one key, compose in any.

A small model has to infer a piece's key before it can choose in-key pitches, and with pieces in
all 24 keys that inference is most of what it gets wrong (every generated piece used all 12
pitch classes). Transposing every training piece so its scale becomes C major's (a major key's
tonic to C, a minor key's to A) leaves the model one scale to learn; the pieces it writes are
then moved to a key drawn from the training pieces' own keys (:func:`draw_shift`), and an input
to continue or rewrite is moved into the model's key and back (:func:`normalising_shift`).

A key is not drawn apart from the register: the chorales sit where the voices sing in every key (their mean pitch
varies by 1.7 semitones from piece to piece, by 3.9 once moved to C), so a piece written in C is moved to a key
drawn with the training keys' frequencies *and* the odds that its moved mean pitch lies in the training pieces'
register (:func:`pitch_register`; bach / pop909, 2 seeds: pitch-mean OA 0.61-0.70 -> 0.80-0.92).

The key estimate is Krumhansl-Schmuckler: the duration-weighted pitch-class histogram
correlated with the 24 rotated Krumhansl-Kessler key profiles.
"""

from __future__ import annotations

import numpy as np

from fractalmidi.data.draw import pick
from fractalmidi.data.roll import NUM_PITCHES, VELOCITY_BITS

PITCH_CLASSES = 12
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
RELATIVE_MAJOR = 3
"""Semitones from a minor tonic up to its relative major's (A minor -> C major)."""
MIN_SHIFT = -PITCH_CLASSES // 2
"""Shifts are taken in ``[-6, 5]``: the smallest move to the target scale."""
CHROMA_STEER_NEEDS_KEY = ("chroma_steer needs a key-normalised model (data.key_normalize=true): it steers the "
                          "pitches outside C major, the key such a model composes in")
"""Why a chroma steer is refused without key normalisation (at training and at sampling)."""
MIN_REGISTER_SPREAD = 0.5
"""Semitones: the register's spread is never taken narrower (two pieces of one register would pin every key)."""


def sounding_steps(codes: np.ndarray) -> np.ndarray:
    """Sounding steps per pitch ``(128,)`` of uint8 note codes ``(..., 128, T)`` (durations weigh in)."""
    sounding = (np.asarray(codes) & VELOCITY_BITS) > 0
    return sounding.reshape(-1, NUM_PITCHES, sounding.shape[-1]).sum(axis=(0, 2))


def pitch_class_histogram(codes: np.ndarray) -> np.ndarray:
    """Sounding steps per pitch class of uint8 note codes ``(..., 128, T)`` (durations weigh in)."""
    return np.bincount(np.arange(NUM_PITCHES) % PITCH_CLASSES, weights=sounding_steps(codes),
                       minlength=PITCH_CLASSES)


KEY_PROFILES = np.stack([np.roll(profile, tonic) for profile in (MAJOR_PROFILE, MINOR_PROFILE)
                         for tonic in range(PITCH_CLASSES)])
"""``(24, 12)``: rows 0-11 major on tonic 0-11, rows 12-23 minor."""


def estimate_key(codes: np.ndarray) -> tuple[int, bool] | None:
    """``(tonic pitch class, is_major)`` of a roll, or None when it has no notes."""
    hist = pitch_class_histogram(codes)
    if hist.sum() == 0 or np.all(hist == hist[0]):
        return None
    best = int(np.argmax(np.corrcoef(hist, KEY_PROFILES)[0, 1:]))
    return best % PITCH_CLASSES, best < PITCH_CLASSES


def wrap_shift(shift: int) -> int:
    """The same transposition class, in ``[-6, 5]`` semitones."""
    return (shift - MIN_SHIFT) % PITCH_CLASSES + MIN_SHIFT


def normalising_shift(codes: np.ndarray) -> int:
    """Semitones that move a roll's key to C major / A minor (0 for a roll without notes), moved by an
    octave where the notes would otherwise leave the keyboard."""
    key = estimate_key(codes)
    if key is None:
        return 0
    tonic, major = key
    shift = wrap_shift(-tonic if major else -(tonic + RELATIVE_MAJOR))
    return fit_shift(codes, shift)


def fit_shift(codes: np.ndarray, shift: int) -> int:
    """``shift`` or an octave-equivalent one that keeps every note of ``codes`` on the keyboard (``shift``
    itself when none does)."""
    rows = np.flatnonzero(np.asarray(codes).reshape(-1, NUM_PITCHES, np.shape(codes)[-1]).any(axis=(0, 2)))
    if rows.size == 0:
        return shift
    for candidate in (shift, shift - PITCH_CLASSES, shift + PITCH_CLASSES):
        if rows[0] + candidate >= 0 and rows[-1] + candidate < NUM_PITCHES:
            return candidate
    return shift


def transpose(roll, shift: int):
    """``roll`` (``(..., 128, T)``, a numpy array or torch tensor of any dtype) moved ``shift`` semitones;
    notes pushed off the keyboard are dropped."""
    out = roll.new_zeros(roll.shape) if hasattr(roll, "new_zeros") else np.zeros_like(roll)
    if abs(shift) >= NUM_PITCHES:
        return out
    if shift >= 0:
        out[..., shift:, :] = roll[..., : NUM_PITCHES - shift, :]
    else:
        out[..., :shift, :] = roll[..., -shift:, :]
    return out


def shift_histogram(shifts: list[int]) -> list[int]:
    """How many pieces needed each normalising shift, as counts for shifts ``-6..5`` (index 0 = -6)."""
    counts = [0] * PITCH_CLASSES
    for shift in shifts:
        counts[wrap_shift(shift) - MIN_SHIFT] += 1
    return counts


def mean_pitch(codes: np.ndarray) -> float | None:
    """Mean pitch of a roll's sounding steps (longer notes weigh more); None without notes."""
    per_pitch = sounding_steps(codes)
    total = per_pitch.sum()
    return float(np.arange(NUM_PITCHES) @ per_pitch / total) if total else None


def pitch_register(means: list[float]) -> list[float] | None:
    """``[mean, spread]`` of the pieces' mean pitches in their own keys (None for fewer than two pieces)."""
    if len(means) < 2:
        return None
    return [round(float(np.mean(means)), 3), round(max(float(np.std(means)), MIN_REGISTER_SPREAD), 3)]


def draw_shift(counts: list[int], quantile: float, pitch: float | None = None,
               register: list[float] | None = None) -> int:
    """A transposition out of the model's key: minus the normalising shift at ``quantile`` of the training
    pieces' frequencies (uniform when ``counts`` is empty or all zero), each weighed by how likely a piece of
    mean ``pitch`` moved by it lies in the training ``register`` (:func:`pitch_register`) where both are known."""
    weights = np.asarray(counts, dtype=np.float64)
    if weights.size != PITCH_CLASSES or weights.sum() <= 0:
        weights = np.ones(PITCH_CLASSES)
    shifts = -(np.arange(PITCH_CLASSES) + MIN_SHIFT)
    if pitch is not None and register:
        mean, spread = register
        weighted = weights * np.exp(-0.5 * ((pitch + shifts - mean) / spread) ** 2)
        weights = weighted if weighted.sum() > 0 else weights
    return int(shifts[pick(weights, quantile)])
