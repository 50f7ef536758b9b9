"""Round-trip fidelity: note-onset F1 of MIDI -> roll -> MIDI against the quantised source."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fractalmidi.data.grid import Grid
from fractalmidi.data.roll import NUM_PITCHES, NoteArrays, midi_notes, notes_to_roll, roll_to_notes


def onset_f1(reference: NoteArrays, estimate: NoteArrays) -> dict[str, float]:
    """Precision / recall / F1 of notes matched one-to-one on (pitch, onset step).

    Equal steps means the onsets lie within half a grid step of each other, since both sides
    were rounded to the grid after removing the same offset.
    """
    ref = np.unique(reference.pitch * (1 << 40) + reference.onset)
    est = estimate.pitch * (1 << 40) + estimate.onset
    est_unique = np.unique(est)
    hits = float(np.intersect1d(ref, est_unique).size)
    precision = hits / est.size if est.size else 1.0
    recall = hits / ref.size if ref.size else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def round_trip_f1(src: str | os.PathLike, *, grid: str | Grid = "16th", sustain: bool = False) -> dict[str, Any]:
    """F1 of the notes read back from the roll of ``src`` against its grid-quantised notes."""
    notes, meta = midi_notes(src, grid=grid, sustain=sustain)
    roll = notes_to_roll(notes, int(notes.end.max()))
    assert roll.shape[0] == NUM_PITCHES
    scores = onset_f1(notes, roll_to_notes(roll))
    return {**scores, "reference_notes": len(notes), **meta}
