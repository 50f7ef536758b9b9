"""Style labels: what holds for a whole piece, given to the model as a class label.

A passage is busy or calm and diatonic or chromatic as a whole, but a model that writes a roll patch by
patch has no variable for the whole roll: every piece it writes comes out near the training set's
average (the shipped POP909 model: scale consistency 0.966 +/- 0.015 per piece against the songs'
0.962 +/- 0.062; Bach: inter-onset interval 0.65 +/- 0.07 quarters against 0.66 +/- 0.17). With
``data.style_labels`` every training crop gets a label from two descriptors of its own notes, each cut
into :data:`STYLE_BINS` bins at quantiles of the training pieces' crop-length windows
(:func:`window_styles`): its rhythmic activity (:func:`onset_rate`) and its chromaticism
(:func:`chromaticism`). A model trained with the labels composes at a label drawn with those windows'
frequencies (:func:`draw_style`), at the label of the music it continues or rewrites, or at one the
user names.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fractalmidi.data.draw import pick
from fractalmidi.data.key import PITCH_CLASSES
from fractalmidi.data.roll import NUM_PITCHES, ONSET_BIT, VELOCITY_BITS

STYLE_BINS = 3
"""Bins per descriptor (quantiles of the training pieces): low / middle / high."""
STYLE_DESCRIPTORS = ("onset rate", "chromaticism")
"""What a label describes; label = bin of the first * STYLE_BINS + bin of the second."""
STYLE_CLASSES = STYLE_BINS ** len(STYLE_DESCRIPTORS)
STEER_OPTIONS = ("rhythm_steer", "chroma_steer")
"""Sampling options that act through a style-labelled model's labels (FractalGen's steers)."""
RATE, CHROMATICISM = range(len(STYLE_DESCRIPTORS))
"""Indices of the descriptors in a label."""
DIATONIC = np.array([0, 2, 4, 5, 7, 9, 11])
"""The pitch classes of C major (and A natural minor); its 12 rotations are every major / natural minor key."""
SCALES = np.stack([np.isin(np.arange(PITCH_CLASSES), (DIATONIC + tonic) % PITCH_CLASSES)
                   for tonic in range(PITCH_CLASSES)])


def onset_rate(codes: np.ndarray) -> float | None:
    """The share of steps with a note onset, from a piece's first onset to its last sounding step (how busy
    its rhythm is); None without notes."""
    codes = np.asarray(codes).reshape(NUM_PITCHES, -1)
    onsets = ((codes & ONSET_BIT) > 0).any(axis=0)
    sounding = ((codes & VELOCITY_BITS) > 0).any(axis=0)
    if not onsets.any():
        return None
    first, last = int(np.argmax(onsets)), len(sounding) - 1 - int(np.argmax(sounding[::-1]))
    return float(onsets[first:last + 1].mean())


def chromaticism(codes: np.ndarray) -> float | None:
    """The share of a piece's notes outside the major / natural-minor scale that holds most of them (0 =
    wholly diatonic); None without notes."""
    starts = (np.asarray(codes).reshape(NUM_PITCHES, -1) & ONSET_BIT) > 0
    if not starts.any():
        return None
    counts = starts.sum(axis=-1)
    classes = np.bincount(np.arange(NUM_PITCHES) % PITCH_CLASSES, weights=counts, minlength=PITCH_CLASSES)
    return float(1.0 - (SCALES @ classes).max() / classes.sum())


def piece_style(codes: np.ndarray) -> tuple[float, float] | None:
    """Music's descriptors (:data:`STYLE_DESCRIPTORS`) from uint8 note codes ``([1,] 128, T)``; None without notes."""
    rate, chroma = onset_rate(codes), chromaticism(codes)
    return None if rate is None or chroma is None else (rate, chroma)


def window_styles(pieces: Iterable[np.ndarray], length: int) -> list[tuple[float, float]]:
    """Descriptors of every whole ``length``-step window of each piece's codes (a shorter piece: the piece),
    windows without notes left out: the training crops' styles, without drawing any."""
    styles = []
    for codes in pieces:
        steps = codes.shape[-1]
        for start in range(0, max(steps - length, 0) + 1, length):
            style = piece_style(codes[..., start:start + length])
            if style is not None:
                styles.append(style)
    return styles


def style_edges(styles: list[tuple[float, float]]) -> list[list[float]]:
    """Per descriptor, the ``STYLE_BINS - 1`` inner quantiles of the training windows' values."""
    values = np.asarray(styles, dtype=np.float64).reshape(-1, len(STYLE_DESCRIPTORS))
    if not len(values):
        return [[0.0] * (STYLE_BINS - 1) for _ in STYLE_DESCRIPTORS]
    quantiles = np.arange(1, STYLE_BINS) / STYLE_BINS
    return [np.quantile(values[:, d], quantiles).round(6).tolist() for d in range(len(STYLE_DESCRIPTORS))]


def style_label(style: tuple[float, float] | None, edges: list[list[float]]) -> int:
    """The label of descriptors ``style`` under ``edges`` (:func:`style_edges`): a value at an edge falls in the
    lower bin (so the many wholly diatonic pop windows, chromaticism 0 at the first edge, make the low bin); music
    without notes takes the middle bins."""
    if style is None:
        return sum(STYLE_BINS ** d * (STYLE_BINS // 2) for d in range(len(STYLE_DESCRIPTORS)))
    label = 0
    for value, cuts in zip(style, edges):
        label = label * STYLE_BINS + int(np.searchsorted(np.asarray(cuts), value, side="left"))
    return label


def label_bins(labels: np.ndarray | int, descriptor: int) -> np.ndarray:
    """Each label's bin of descriptor ``descriptor`` (an index into :data:`STYLE_DESCRIPTORS`): the inverse of
    :func:`style_label`'s packing."""
    return np.asarray(labels) // STYLE_BINS ** (len(STYLE_DESCRIPTORS) - 1 - descriptor) % STYLE_BINS


def bin_offsets(labels: np.ndarray, descriptor: int) -> np.ndarray:
    """How far each label's bin of descriptor ``descriptor`` lies from the middle bin: -1 low, 0 middle, +1 high
    (with 3 bins)."""
    return label_bins(labels, descriptor) - (STYLE_BINS - 1) / 2


def style_histogram(labels: list[int]) -> list[int]:
    """How many windows had each label."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=STYLE_CLASSES).tolist()


def draw_style(counts: list[int], quantile: float) -> int:
    """The label at ``quantile`` of the training windows' frequencies (a uniform quantile draws one like them)."""
    return pick(np.asarray(counts, dtype=np.float64), quantile)


def describe_style(label: int, edges: list[list[float]]) -> str:
    """A label in words, e.g. 'onset rate high (> 0.31), chromaticism low (<= 0.02)'."""
    words = ("low", "middle", "high") if STYLE_BINS == 3 else tuple(f"bin {b}" for b in range(STYLE_BINS))
    parts = []
    for d, (name, cuts) in enumerate(zip(STYLE_DESCRIPTORS, edges)):
        b = int(label_bins(label, d))
        bound = f"<= {cuts[0]:.3g}" if b == 0 else f"> {cuts[-1]:.3g}" if b == STYLE_BINS - 1 else \
            f"{cuts[b - 1]:.3g}-{cuts[b]:.3g}"
        parts.append(f"{name} {words[b]} ({bound})")
    return ", ".join(parts)
