"""Canvas and mask of each generation mode: one mechanism for compose, continue and inpaint.

A plan is a float canvas ``(1, 2, 128, T_pad)`` of roll planes (velocity / 127, onset), a bool
mask of the same shape (True = generate, equal on both planes) and
the length the result is cropped back to. ``T_pad`` is the requested length rounded up to the
model's ``length_multiple``: a region that reaches the last step (a continuation) generates
the extra steps and drops them; any other region pads with silence marked *known*. Every mode
is a :func:`region_plan`; :func:`result_roll` turns the model's output back into a roll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fractalmidi.data.roll import (
    MAX_VELOCITY,
    NUM_PITCHES,
    ONSET_BIT,
    ONSET_PLANE,
    ROLL_PLANES,
    VELOCITY_BITS,
    VELOCITY_PLANE,
    as_uint8_roll,
    canonical_codes,
    codes_to_planes,
)
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


def region_plan(roll: np.ndarray, region: np.ndarray, multiple: int) -> Plan:
    """Generate the cells where ``region`` ``(128, L)`` is True, keep the rest of ``roll`` exactly.

    The one mechanism behind every mode: ``L`` may exceed the roll's length (steps after its
    end are silence, generated where ``region`` says). The canvas is padded to ``multiple``:
    the padding is generated (and dropped) when the region reaches the last step, as a
    continuation should not be told the music stops there; otherwise it is known silence.
    """
    steps = roll.shape[-1]
    length = region.shape[-1]
    if region.shape != (NUM_PITCHES, length) or region.dtype != np.bool_ or length < steps:
        raise UserError(f"a region must be a ({NUM_PITCHES}, L >= {steps}) boolean array, got {region.dtype} "
                        f"{region.shape}")
    if length == 0 or not region.any():
        raise UserError("the region to generate is empty: select some steps or pitches first")
    canvas, mask = _empty(round_up(length, multiple))
    canvas[0, :, :, :steps] = _as_float(roll)
    mask[0, :, :, :length] = torch.from_numpy(region)
    if region[:, -1].any():
        mask[..., length:] = True
    canvas[mask] = 0.0  # the model never sees what it is asked to rewrite
    columns = np.flatnonzero(region.any(axis=0))
    rows = np.flatnonzero(region.any(axis=1))
    info = {"start": int(columns[0]), "end": int(columns[-1]) + 1, "pitch_low": int(rows[0]),
            "pitch_high": int(rows[-1])}
    return Plan(canvas, mask, length, info)


def continue_plan(roll: np.ndarray, condition_length: int, length: int, multiple: int) -> Plan:
    """Keep the first ``condition_length`` steps of ``roll``, generate ``length`` more."""
    steps = roll.shape[-1]
    if not 1 <= condition_length <= steps:
        raise UserError(f"--condition-length {condition_length} is outside the input, which has {steps} steps; "
                        f"accepted: 1..{steps}")
    if length < 1:
        raise UserError(f"--length must be a positive number of new steps, got {length}")
    region = np.zeros((NUM_PITCHES, condition_length + length), dtype=bool)
    region[:, condition_length:] = True
    return region_plan(roll[..., :condition_length], region, multiple)


def inpaint_plan(roll: np.ndarray, start: int, end: int, pitch_low: int | None, pitch_high: int | None,
                 multiple: int) -> Plan:
    """Rewrite steps ``[start, end)`` of ``roll`` (optionally only pitches ``pitch_low..pitch_high``)."""
    steps = roll.shape[-1]
    low = 0 if pitch_low is None else pitch_low
    high = MAX_PITCH if pitch_high is None else pitch_high
    if not 0 <= start < end <= steps:
        raise UserError(f"region --start {start} --end {end} is not inside the input ({steps} steps): need 0 <= start "
                        f"< end <= {steps}")
    if not 0 <= low <= high <= MAX_PITCH:
        raise UserError(f"pitch range --pitch-low {low} --pitch-high {high} is invalid: need 0 <= low <= high <= "
                        f"{MAX_PITCH}")
    region = np.zeros((NUM_PITCHES, steps), dtype=bool)
    region[low : high + 1, start:end] = True
    return region_plan(roll, region, multiple)


def result_roll(plan: Plan, result: torch.Tensor) -> np.ndarray:
    """One sample of the model's output ``(2, 128, T_pad)`` -> uint8 note codes ``(1, 128, length)``.

    Generated cells decode as the model wrote them, known cells keep their codes (velocity and
    onset) as given, and the two are joined by :func:`separate_at_region_edges`, so every note
    outside the region comes back exactly as it was.
    """
    region = plan.mask[0, 0, :, : plan.length].cpu().numpy()
    generated = as_uint8_roll(result[..., : plan.length])
    known = plan.canvas[0, :, :, : plan.length].cpu().numpy()  # planes of the canonical input: no decoding needed
    known_codes = np.rint(known[VELOCITY_PLANE] * MAX_VELOCITY).astype(np.uint8)
    known_codes[known[ONSET_PLANE] > 0.5] |= ONSET_BIT
    return separate_at_region_edges(np.where(region, generated, known_codes), region)[None]


def separate_at_region_edges(codes: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Canonical note codes ``(128, T)`` from generated (``region``) and known cells, joined so
    that no known frame changes.

    A generated frame held (no onset) right after a known sounding frame of its pitch would
    lengthen that note, which lies outside the region: it becomes an onset (a re-strike). A
    generated note held on into known frames (a note cut by the region's end) takes their
    velocity, so the known frames keep their loudness.
    """
    out = codes.copy()
    sounding = (out & VELOCITY_BITS) > 0
    enters = np.zeros_like(region)
    enters[:, 1:] = region[:, 1:] & ~region[:, :-1] & sounding[:, 1:] & sounding[:, :-1]
    out[enters] |= ONSET_BIT
    leaves = np.zeros_like(region)
    continued = sounding[:, :-1] & sounding[:, 1:] & ((out[:, 1:] & ONSET_BIT) == 0)
    leaves[:, :-1] = region[:, :-1] & ~region[:, 1:] & continued
    for pitch, step in zip(*np.nonzero(leaves)):
        onset = int(step)  # walk back to where the generated note starts
        while (not out[pitch, onset] & ONSET_BIT and onset > 0
               and region[pitch, onset - 1] and sounding[pitch, onset - 1]):
            onset -= 1
        out[pitch, onset] = (out[pitch, onset] & ONSET_BIT) | (out[pitch, step + 1] & VELOCITY_BITS)
    return canonical_codes(out)


def build_plan(request, roll: np.ndarray | None, multiple: int) -> Plan:
    """The plan of a resolved ``generate`` request (``roll``: the quantised input, if any)."""
    if request.mode == "unconditional":
        return unconditional_plan(request.length, multiple)
    if request.mode == "continue":
        return continue_plan(roll, request.condition_length, request.length, multiple)
    return inpaint_plan(roll, request.start, request.end, request.pitch_low, request.pitch_high, multiple)
