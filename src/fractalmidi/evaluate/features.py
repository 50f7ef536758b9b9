"""Musical statistics of one piece, from a MIDI file or a piano-roll.

Every piece becomes a :class:`Notes` table (onsets and durations in quarter notes) so MIDI
files and rolls are measured the same way. Time-grid statistics (polyphony, empty beats,
groove) quantise to :data:`STEPS_PER_QUARTER` (16th notes) and assume 4/4 bars for every
set, so the numbers compare across sets whatever their files declare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalmidi.data.roll import MAX_VELOCITY, NUM_PITCHES

STEPS_PER_QUARTER = 4
"""Quantisation grid of the time-grid statistics: 16th notes."""
BEATS_PER_BAR = 4
"""Bars for groove consistency are 4/4 in every set (see module docstring)."""
MAX_DURATION_STEPS = 32
"""Duration / inter-onset histograms: 1..32 sixteenths, longer values share the last bin."""
VELOCITY_BIN = 8
"""Velocity histogram bin width (16 bins over 0..127)."""
MAX_POLYPHONY = 16
"""Polyphony histogram: 1..16 sounding notes, more share the last bin."""
MIDI_SUFFIXES = (".mid", ".midi")

_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
SCALE_MASKS = np.zeros((12, 12), dtype=bool)
"""Row k: pitch classes of the major scale on tonic k (minor scales are their relative majors)."""
SCALE_MASKS[np.arange(12)[:, None], (np.arange(12)[:, None] + _MAJOR_SCALE[None, :]) % 12] = True

SCALAR_FEATURES: dict[str, str] = {
    "pitch_mean": "mean MIDI pitch",
    "pitch_range": "highest minus lowest pitch (semitones)",
    "pitch_classes_used": "distinct pitch classes",
    "pitch_class_entropy": "entropy of the pitch-class histogram (bits)",
    "duration_mean": "mean note duration (quarters)",
    "ioi_mean": "mean inter-onset interval (quarters)",
    "velocity_mean": "mean velocity",
    "polyphony_mean": "mean sounding notes per non-silent 16th",
    "note_density": "notes per quarter",
    "empty_beat_rate": "fraction of beats with no sounding note",
    "scale_consistency": "largest fraction of notes inside one major/minor scale",
    "groove_consistency": "1 - mean onset-pattern Hamming distance of neighbouring bars",
}
"""One number per piece: their distributions are compared by OA and feed the Frechet vector."""

HISTOGRAM_FEATURES: dict[str, int] = {
    "pitch": NUM_PITCHES,
    "pitch_class": 12,
    "duration": MAX_DURATION_STEPS,
    "ioi": MAX_DURATION_STEPS,
    "velocity": (MAX_VELOCITY + 1) // VELOCITY_BIN,
    "polyphony": MAX_POLYPHONY,
}
"""Per-piece normalised histograms (name -> number of bins)."""


@dataclass(frozen=True)
class Notes:
    """The notes of a piece, sorted by onset; times in quarter notes."""

    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)


@dataclass(frozen=True)
class PieceFeatures:
    """Every statistic of one piece: scalars and normalised histograms."""

    scalars: dict[str, float]
    histograms: dict[str, np.ndarray]


def _sorted_notes(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, velocity: np.ndarray) -> Notes:
    order = np.lexsort((pitch, onset))
    return Notes(
        onset=onset[order].astype(np.float64),
        duration=duration[order].astype(np.float64),
        pitch=pitch[order].astype(np.int64),
        velocity=velocity[order].astype(np.int64),
    )


def notes_from_midi(path: str | Path) -> Notes:
    """All non-drum notes of a MIDI file, tracks merged, unquantised (``UserError`` when unreadable)."""
    from fractalmidi.data.roll import load_score

    score = load_score(path).to("quarter")
    parts = [track.notes.numpy() for track in score.tracks if not track.is_drum and len(track.notes)]
    if not parts:
        empty = np.zeros(0)
        return _sorted_notes(empty, empty, empty, empty)

    def cat(key: str) -> np.ndarray:
        return np.concatenate([part[key] for part in parts])

    return _sorted_notes(cat("time"), cat("duration"), cat("pitch").astype(np.int64), cat("velocity").astype(np.int64))


def notes_from_roll(roll: np.ndarray, steps_per_quarter: float = STEPS_PER_QUARTER) -> Notes:
    """Notes of a roll ``(1, 128, T)`` / ``(128, T)`` (uint8 note codes or float planes ``(2, 128, T)``).

    Read exactly as ``roll_to_midi`` writes them (:func:`fractalmidi.data.roll_to_notes`), so a
    roll and the MIDI file made from it measure the same.
    """
    from fractalmidi.data.roll import roll_to_notes

    notes = roll_to_notes(roll)
    scale = 1.0 / steps_per_quarter
    return _sorted_notes(notes.onset * scale, (notes.end - notes.onset) * scale, notes.pitch, notes.velocity)


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(counts.shape, dtype=np.float64)


def piece_features(notes: Notes) -> PieceFeatures | None:
    """Statistics of one piece; ``None`` for a piece without notes (nothing to measure)."""
    if len(notes) == 0:
        return None
    pitch, velocity = notes.pitch, notes.velocity
    start = np.maximum(np.rint(notes.onset * STEPS_PER_QUARTER).astype(np.int64), 0)
    stop = np.maximum(start + 1, np.rint((notes.onset + notes.duration) * STEPS_PER_QUARTER).astype(np.int64))
    steps_per_bar = STEPS_PER_QUARTER * BEATS_PER_BAR
    length = int(-(-stop.max() // steps_per_bar) * steps_per_bar)

    delta = np.zeros(length + 1, dtype=np.int64)
    np.add.at(delta, start, 1)
    np.add.at(delta, stop, -1)
    sounding = np.cumsum(delta[:-1])
    active = sounding[sounding > 0]
    beats = sounding.reshape(-1, STEPS_PER_QUARTER).max(axis=1)

    onset_grid = np.zeros(length, dtype=bool)
    onset_grid[start] = True
    bars = onset_grid.reshape(-1, steps_per_bar)
    groove = 1.0 - np.mean(bars[1:] != bars[:-1]) if len(bars) > 1 else 1.0

    pc_counts = np.bincount(pitch % 12, minlength=12).astype(np.float64)
    pc_hist = pc_counts / pc_counts.sum()
    nonzero_pc = pc_hist[pc_hist > 0]
    onsets = np.unique(notes.onset)
    ioi = np.diff(onsets)
    ioi_steps = np.clip(np.rint(ioi * STEPS_PER_QUARTER).astype(np.int64), 1, MAX_DURATION_STEPS) - 1
    dur_steps = np.clip(stop - start, 1, MAX_DURATION_STEPS) - 1

    scalars = {
        "pitch_mean": float(pitch.mean()),
        "pitch_range": float(pitch.max() - pitch.min()),
        "pitch_classes_used": float(nonzero_pc.size),
        "pitch_class_entropy": float(-(nonzero_pc * np.log2(nonzero_pc)).sum()),
        "duration_mean": float(notes.duration.mean()),
        "ioi_mean": float(ioi.mean()) if ioi.size else 0.0,
        "velocity_mean": float(velocity.mean()),
        "polyphony_mean": float(active.mean()),
        "note_density": float(len(notes) / (length / STEPS_PER_QUARTER)),
        "empty_beat_rate": float(np.mean(beats == 0)),
        "scale_consistency": float((SCALE_MASKS @ pc_counts).max() / pc_counts.sum()),
        "groove_consistency": float(groove),
    }
    histograms = {
        "pitch": _normalised(np.bincount(pitch, minlength=NUM_PITCHES).astype(np.float64)),
        "pitch_class": pc_hist,
        "duration": _normalised(np.bincount(dur_steps, minlength=MAX_DURATION_STEPS).astype(np.float64)),
        "ioi": _normalised(np.bincount(ioi_steps, minlength=MAX_DURATION_STEPS).astype(np.float64)),
        "velocity": _normalised(
            np.bincount(np.clip(velocity, 0, MAX_VELOCITY) // VELOCITY_BIN,
                        minlength=HISTOGRAM_FEATURES["velocity"]).astype(
                np.float64
            )
        ),
        "polyphony": _normalised(
            np.bincount(np.clip(active, 1, MAX_POLYPHONY) - 1, minlength=MAX_POLYPHONY).astype(np.float64)
        ),
    }
    return PieceFeatures(scalars=scalars, histograms=histograms)


def frechet_vector(features: PieceFeatures) -> np.ndarray:
    """The per-piece vector behind the Frechet distance: every scalar, then the pitch-class histogram."""
    return np.concatenate([[features.scalars[name] for name in SCALAR_FEATURES], features.histograms["pitch_class"]])


FRECHET_DIMENSIONS: tuple[str, ...] = tuple(SCALAR_FEATURES) + tuple(f"pitch_class_{k}" for k in range(12))
"""Names of the entries of :func:`frechet_vector`."""
