"""MIDI -> piano-roll -> MIDI, to hear and measure the round trip (``fractalmidi convert``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalmidi.data.fidelity import onset_f1
from fractalmidi.data.grid import DEFAULT_GRID
from fractalmidi.data.roll import DEFAULT_MAX_STEPS, BadMidiError, midi_notes, midi_to_roll, roll_to_midi, roll_to_notes
from fractalmidi.errors import UserError


@dataclass(frozen=True)
class RoundTrip:
    """What one round trip kept: the roll's reading of the input and the onset scores against it."""

    steps: int
    meta: dict[str, Any]
    """:func:`~fractalmidi.data.roll.midi_to_roll`'s notes: counts, grid, offset, on-grid share, collisions."""
    scores: dict[str, float]
    """Onset precision, recall and F1 of the written MIDI against the input's notes."""


def convert(source: str | os.PathLike, out: str | os.PathLike, *, grid: str = DEFAULT_GRID, sustain: bool = False,
            tempo: float | None = None, max_steps: int = DEFAULT_MAX_STEPS, overwrite: bool = False) -> RoundTrip:
    """Read ``source`` as a roll and write it to ``out`` as MIDI (at ``tempo`` BPM, default the input's)."""
    from fractalmidi.outdir import check_out_file

    check_out_file(out, overwrite, [source], "OUT.mid")
    if tempo is not None and not (math.isfinite(tempo) and tempo > 0):
        raise UserError(f"--tempo must be a positive number of beats per minute, got {tempo}")
    if max_steps < 1:
        raise UserError(f"--max-steps must be a positive number of steps, got {max_steps}")
    try:
        roll, meta = midi_to_roll(source, grid=grid, sustain=sustain, max_steps=max_steps)
    except BadMidiError as err:
        raise UserError(f"{source}: {err}") from None
    roll_to_midi(roll, Path(out), grid=grid, tempo_bpm=tempo if tempo is not None else meta["tempo_bpm"])
    reference, _ = midi_notes(source, grid=grid, sustain=sustain)
    return RoundTrip(steps=int(roll.shape[-1]), meta=meta, scores=onset_f1(reference, roll_to_notes(roll)))
