"""Region plans (any mask, past the end too) and rolls back from the model's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalmidi.canvas import continue_plan, region_plan, result_roll, separate_at_region_edges
from fractalmidi.data.roll import ONSET_BIT, codes_to_planes, roll_to_notes
from fractalmidi.errors import UserError

MULTIPLE = 16


def test_region_plan_takes_any_shape_and_reaches_past_the_end() -> None:
    roll = np.zeros((1, 128, 20), dtype=np.uint8)
    roll[0, 60, 0:8] = 100
    roll[0, 64, 4:20] = 50
    roll[0, [60, 64], [0, 4]] |= ONSET_BIT
    region = np.zeros((128, 40), dtype=bool)
    region[60, 2:5] = True  # a brush stroke
    region[70:80, 30:40] = True  # a rectangle past the roll's end, touching the last step
    plan = region_plan(roll, region, MULTIPLE)
    assert plan.canvas.shape == (1, 2, 128, 48) and plan.length == 40
    assert np.array_equal(plan.mask[0, 0, :, :40].numpy(), region) and torch.equal(plan.mask[0, 0], plan.mask[0, 1])
    assert plan.mask[0, 0, :, 40:].all()  # padding after a region at the end is generated, then dropped
    assert (plan.canvas[plan.mask] == 0).all()
    assert plan.canvas[0, 0, 60, 0].item() == pytest.approx(100 / 127) and plan.canvas[0, 1, 60, 0] == 1
    assert plan.canvas[0, 0, 64, 19] > 0 and plan.canvas[0, 1, 64, 19] == 0
    assert plan.region == {"start": 2, "end": 40, "pitch_low": 60, "pitch_high": 79}
    inside = np.zeros((128, 20), dtype=bool)
    inside[64, 4:6] = True
    assert not region_plan(roll, inside, MULTIPLE).mask[..., 20:].any()  # known silence as padding
    with pytest.raises(UserError, match="region to generate is empty"):
        region_plan(roll, np.zeros((128, 20), dtype=bool), MULTIPLE)
    with pytest.raises(UserError, match=r"\(128, L >= 20\) boolean"):
        region_plan(roll, np.ones((128, 10), dtype=bool), MULTIPLE)


def test_continue_plan_is_a_region_plan() -> None:
    roll = np.full((1, 128, 30), 7, dtype=np.uint8)
    plan = continue_plan(roll, 20, 12, MULTIPLE)
    assert plan.length == 32 and plan.canvas.shape[-1] == 32
    assert plan.mask[..., 20:].all() and not plan.mask[..., :20].any()


def test_generated_notes_never_merge_with_known_ones() -> None:
    codes = np.zeros((128, 16), dtype=np.uint8)
    region = np.zeros((128, 16), dtype=bool)
    region[:, 4:8] = True
    codes[60, 0:8] = 90  # a known note ending where the region starts, "held on" by the model
    codes[62, 4:12] = 70  # a generated note running into a known note that starts at the region's end
    codes[62, 8] |= ONSET_BIT
    codes[64, 4:8] = 30  # generated after known silence: untouched
    codes[[60, 62, 64], [0, 4, 4]] |= ONSET_BIT
    out = separate_at_region_edges(codes, region)
    assert np.array_equal(out[~region], codes[~region])
    assert out[60, 4] == 90 | ONSET_BIT and out[60, 5:8].tolist() == [90] * 3  # a re-strike, not a longer note
    assert np.array_equal(out[62], codes[62]) and np.array_equal(out[64], codes[64])
    notes = roll_to_notes(out)
    found = set(zip(notes.pitch.tolist(), notes.onset.tolist(), notes.end.tolist(), notes.velocity.tolist()))
    assert {(60, 0, 4, 90), (60, 4, 8, 90), (62, 4, 8, 70), (62, 8, 12, 70), (64, 4, 8, 30)} == found


def test_a_note_cut_by_the_region_end_keeps_the_loudness_of_its_known_frames() -> None:
    codes = np.zeros((128, 16), dtype=np.uint8)
    region = np.zeros((128, 16), dtype=bool)
    region[:, 4:8] = True
    codes[60, 5:8] = 40 | np.array([ONSET_BIT, 0, 0], dtype=np.uint8)  # generated onset at velocity 40 ...
    codes[60, 8:12] = 100  # ... held on into known frames of velocity 100 (the input's note began inside the region)
    out = separate_at_region_edges(codes, region)
    assert out[60, 5] == 100 | ONSET_BIT and out[60, 6:12].tolist() == [100] * 6
    assert np.array_equal(out[~region], codes[~region])
    notes = roll_to_notes(out)
    found = (notes.pitch.tolist(), notes.onset.tolist(), notes.end.tolist(), notes.velocity.tolist())
    assert found == ([60], [5], [12], [100])


def test_result_roll_crops_and_keeps_outside_notes() -> None:
    roll = np.zeros((1, 128, 20), dtype=np.uint8)
    roll[0, 60, 0:4] = 90
    roll[0, 60, 0] |= ONSET_BIT
    region = np.zeros((128, 20), dtype=bool)
    region[60, 4:10] = True
    plan = region_plan(roll, region, MULTIPLE)
    result = plan.canvas[0].clone()
    result[0, 60, 4:10] = 50 / 127  # the model continues the known note (no onset)
    out = result_roll(plan, result)
    assert out.shape == (1, 128, 20) and out.dtype == np.uint8
    assert out[0, 60, :4].tolist() == roll[0, 60, :4].tolist() and out[0, 60, 4] & ONSET_BIT
    notes = roll_to_notes(out)
    assert (notes.pitch.tolist(), notes.onset.tolist(), notes.end.tolist()) == ([60, 60], [0, 4], [4, 10])
    assert torch.equal(torch.from_numpy(codes_to_planes(out[0]))[:, ~region], plan.canvas[0, :, :, :20][:, ~region])
