"""Canvas and mask of each generation mode: one mechanism for compose, continue and inpaint.

A plan is a float canvas ``(1, 2, 128, T_pad)`` of roll planes (velocity / 127, onset), a bool
mask of the same shape (True = generate, equal on both planes) and
the length the result is cropped back to. ``T_pad`` is the requested length rounded up to the
model's ``length_multiple``: a continuation generates the extra steps and drops them; an
inpainting pads the piece with silence marked *known*, so nothing outside the region changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fractalmidi.data.roll import NUM_PITCHES, ROLL_PLANES, codes_to_planes
from fractalmidi.errors import UserError

MAX_PITCH = NUM_PITCHES - 1


@dataclass
class Plan:
    canvas: torch.Tensor
    mask: torch.Tensor
    length: int
    """Steps kept in the output (the canvas may be longer: padding)."""
    region: dict[str, Any] = field(default_factory=dict)
    """What is generated, in steps and pitches (recorded in ``samples.json``)."""


def round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def accepted_lengths(length: int, multiple: int) -> str:
    """The nearest lengths a model with ``multiple`` accepts, for error messages."""
    below = max(length // multiple * multiple, multiple)
    above = round_up(length, multiple) if length % multiple else length + multiple
    near = sorted({below, above})
    return f"a positive multiple of {multiple} (nearest: {', '.join(map(str, near))})"


def _empty(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, ROLL_PLANES, NUM_PITCHES, length)
    return torch.zeros(shape, dtype=torch.float32), torch.zeros(shape, dtype=torch.bool)


def _as_float(roll: np.ndarray) -> torch.Tensor:
    """uint8 note codes ``(1, 128, T)`` -> float planes ``(2, 128, T)``."""
    return torch.from_numpy(codes_to_planes(np.asarray(roll)[0]))


def unconditional_plan(length: int, multiple: int) -> Plan:
    """A silent canvas, all of it generated; ``length`` must already be a multiple."""
    if length < 1 or length % multiple:
        raise UserError(f"--length {length} is not accepted by this model: use {accepted_lengths(length, multiple)}")
    canvas, mask = _empty(length)
    mask[:] = True
    return Plan(canvas, mask, length, {"start": 0, "end": length, "pitch_low": 0, "pitch_high": MAX_PITCH})


def continue_plan(roll: np.ndarray, condition_length: int, length: int, multiple: int) -> Plan:
    """Keep the first ``condition_length`` steps of ``roll``, generate ``length`` more."""
    steps = roll.shape[-1]
    if not 1 <= condition_length <= steps:
        raise UserError(f"--condition-length {condition_length} is outside the input, which has {steps} steps; accepted: 1..{steps}")
    if length < 1:
        raise UserError(f"--length must be a positive number of new steps, got {length}")
    total = condition_length + length
    canvas, mask = _empty(round_up(total, multiple))
    canvas[0, :, :, :condition_length] = _as_float(roll[..., :condition_length])
    mask[..., condition_length:] = True
    return Plan(canvas, mask, total, {"start": condition_length, "end": total, "pitch_low": 0, "pitch_high": MAX_PITCH})


def inpaint_plan(roll: np.ndarray, start: int, end: int, pitch_low: int | None, pitch_high: int | None, multiple: int) -> Plan:
    """Rewrite steps ``[start, end)`` of ``roll`` (optionally only pitches ``pitch_low..pitch_high``)."""
    steps = roll.shape[-1]
    low = 0 if pitch_low is None else pitch_low
    high = MAX_PITCH if pitch_high is None else pitch_high
    if not 0 <= start < end <= steps:
        raise UserError(f"region --start {start} --end {end} is not inside the input ({steps} steps): need 0 <= start < end <= {steps}")
    if not 0 <= low <= high <= MAX_PITCH:
        raise UserError(f"pitch range --pitch-low {low} --pitch-high {high} is invalid: need 0 <= low <= high <= {MAX_PITCH}")
    canvas, mask = _empty(round_up(steps, multiple))
    canvas[0, :, :, :steps] = _as_float(roll)
    mask[0, :, low : high + 1, start:end] = True
    canvas[mask] = 0.0  # the model never sees what it is asked to rewrite
    return Plan(canvas, mask, steps, {"start": start, "end": end, "pitch_low": low, "pitch_high": high})


def build_plan(request, roll: np.ndarray | None, multiple: int) -> Plan:
    """The plan of a resolved ``generate`` request (``roll``: the quantised input, if any)."""
    if request.mode == "unconditional":
        return unconditional_plan(request.length, multiple)
    if request.mode == "continue":
        return continue_plan(roll, request.condition_length, request.length, multiple)
    return inpaint_plan(roll, request.start, request.end, request.pitch_low, request.pitch_high, multiple)
