"""``fractalmidi generate``: canvases and masks, request checks, and every mode end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from fractalmidi.canvas import continue_plan, inpaint_plan, unconditional_plan
from fractalmidi.cli import main
from fractalmidi.errors import UserError

MULTIPLE = 16


def piece(steps: int = 50) -> np.ndarray:
    """A small piece: a held C4, a moving bass line and a soft high note."""
    roll = np.zeros((1, 128, steps), dtype=np.uint8)
    roll[0, 60, : steps - 10] = 90
    for t in range(0, steps, 4):
        roll[0, 36 + (t // 4) % 5, t : t + 3] = 70
    roll[0, 84, 20:30] = 40
    return roll


def test_unconditional_plan_and_accepted_lengths() -> None:
    plan = unconditional_plan(64, MULTIPLE)
    assert plan.canvas.shape == (1, 1, 128, 64) and plan.mask.all() and plan.length == 64
    with pytest.raises(UserError, match=r"--length 100 .* multiple of 16 \(nearest: 96, 112\)"):
        unconditional_plan(100, MULTIPLE)
    with pytest.raises(UserError, match=r"nearest: 16\)"):
        unconditional_plan(5, MULTIPLE)


def test_continue_plan_keeps_the_prefix_and_pads_the_end() -> None:
    roll = piece()
    plan = continue_plan(roll, 20, 30, MULTIPLE)
    assert plan.canvas.shape[-1] == 64 and plan.length == 50
    assert torch.equal(plan.canvas[0, 0, :, :20], torch.from_numpy(roll[0, :, :20] / np.float32(127)))
    assert not plan.mask[..., :20].any() and plan.mask[..., 20:].all()
    assert (plan.canvas[..., 20:] == 0).all()
    with pytest.raises(UserError, match=r"--condition-length 51 .* 50 steps; accepted: 1\.\.50"):
        continue_plan(roll, 51, 10, MULTIPLE)


def test_inpaint_plan_pads_with_known_silence_and_hides_the_region() -> None:
    roll = piece()
    plan = inpaint_plan(roll, 8, 24, 50, 100, MULTIPLE)
    assert plan.canvas.shape[-1] == 64 and plan.length == 50
    expected = np.zeros((128, 64), dtype=bool)
    expected[50:101, 8:24] = True
    assert np.array_equal(plan.mask[0, 0].numpy(), expected)
    assert (plan.canvas[plan.mask] == 0).all()  # the model never sees the notes it rewrites
    known = ~plan.mask[0, 0, :, :50]
    original = torch.from_numpy(roll[0] / np.float32(127))
    assert torch.equal(plan.canvas[0, 0, :, :50][known], original[known])
    assert plan.region == {"start": 8, "end": 24, "pitch_low": 50, "pitch_high": 100}
    for args, message in [
        ((30, 60, None, None), r"need 0 <= start < end <= 50"),
        ((24, 24, None, None), r"need 0 <= start < end <= 50"),
        ((-1, 10, None, None), r"need 0 <= start < end <= 50"),
        ((0, 10, 70, 60), r"need 0 <= low <= high <= 127"),
        ((0, 10, 0, 128), r"need 0 <= low <= high <= 127"),
    ]:
        with pytest.raises(UserError, match=message):
            inpaint_plan(roll, *args, MULTIPLE)
