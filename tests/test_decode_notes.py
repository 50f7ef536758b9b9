"""Whole notes from per-pixel model output (decode_notes) and FractalGen's pixel states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalmidi.data.roll import codes_to_planes, planes_to_codes
from fractalmidi.models.base import DEFAULT_NOTE_VELOCITY, decode_notes
from fractalmidi.models.fractal.head import HOLD, PIXEL_FEATURES, SILENCE, PixelStates, bin_velocities, velocity_bins

H, W = 4, 8


def _pixels(rows: dict[int, list[float]], batch: int = 1) -> torch.Tensor:
    out = torch.zeros(batch, H, W)
    for row, values in rows.items():
        out[:, row] = torch.tensor(values)
    return out


def _all_generated(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    canvas = torch.zeros(batch, 2, H, W)
    return canvas, torch.ones_like(canvas, dtype=torch.bool)


def test_each_generated_note_gets_the_mean_velocity_of_its_pixels() -> None:
    canvas, mask = _all_generated()
    sounding = _pixels({1: [1, 1, 1, 0, 1, 1, 1, 1]}) > 0
    onset = _pixels({1: [0, 0, 0, 0, 0, 0, 1, 0]}) > 0  # row 1: note at 0 (after silence), 4, 6 (re-struck)
    velocity = _pixels({1: [0.2, 0.4, 0.6, 0.9, 0.5, 0.7, 0.1, 0.3]})
    out = decode_notes(canvas, mask, sounding, onset, velocity, torch.ones(1, H, W))
    levels = [round(0.4 * 127) / 127] * 3 + [0.0] + [round(0.6 * 127) / 127] * 2 + [round(0.2 * 127) / 127] * 2
    assert out[0, 0, 1].tolist() == pytest.approx(levels, abs=1e-7)
    assert out[0, 1, 1].tolist() == [1, 0, 0, 0, 1, 0, 1, 0]
    assert not out[0, :, [0, 2, 3]].any()  # silent rows stay silent (velocity 0.9 alone is no note)
    # one velocity per note, on the 1/127 grid: the planes are canonical note codes
    assert torch.equal(out, torch.from_numpy(codes_to_planes(planes_to_codes(out.numpy()))))


def test_weights_make_holds_continue_the_onset_velocity_and_a_bare_hold_gets_its_pieces_loudness() -> None:
    canvas, mask = _all_generated()
    sounding = _pixels({0: [1, 1, 1, 0, 0, 1, 1, 0]}) > 0
    onset = _pixels({0: [1, 0, 0, 0, 0, 0, 0, 0]}) > 0
    velocity = _pixels({0: [100 / 127, 0, 0, 0, 0, 0, 0, 0]})  # holds carry no velocity (FractalGen)
    out = decode_notes(canvas, mask, sounding, onset, velocity, (velocity > 0).float())
    # a hold after silence starts a note, as loud as its piece's generated notes
    assert (out[0, 0, 0] * 127).round().tolist() == [100, 100, 100, 0, 0, 100, 100, 0]
    assert out[0, 1, 0].tolist() == [1, 0, 0, 0, 0, 1, 0, 0]
    # per piece: a second piece with only a bare hold has no loudness of its own and gets the default
    canvas, mask = _all_generated(batch=2)
    sounding, onset, velocity = (torch.cat([x, torch.zeros_like(x)]) for x in (sounding, onset, velocity))
    sounding[1, 2, 1:3] = True
    out = decode_notes(canvas, mask, sounding, onset, velocity, (velocity > 0).float())
    assert (out[0, 0, 0] * 127).round().tolist() == [100, 100, 100, 0, 0, 100, 100, 0]
    assert (out[1, 0, 2] * 127).round().tolist() == [0] + [DEFAULT_NOTE_VELOCITY] * 2 + [0] * 5


def test_known_pixels_stay_bit_exact_and_a_generated_hold_continues_a_known_note() -> None:
    canvas = torch.zeros(2, 2, H, W)
    canvas[:, 0, 2, :3] = 0.337  # an off-grid known velocity
    canvas[:, 1, 2, 0] = 1.0
    canvas[:, 0, 3, :] = 0.71  # a known note over the whole row
    canvas[:, 1, 3, 0] = 1.0
    mask = torch.zeros_like(canvas, dtype=torch.bool)
    mask[:, :, :3, 3:] = True  # generate the end of rows 0..2
    sounding = torch.zeros(2, H, W, dtype=torch.bool)
    sounding[:, 2, 3:5] = True  # holds continuing the known note of row 2
    sounding[:, 0, 3:] = True  # row 0: a new note (after silence)
    # row 3 is known: what the model says there (silence) does not matter
    onset = torch.zeros_like(sounding)
    velocity = torch.full((2, H, W), 0.25)
    velocity[:, 2, 3:5] = 0.0
    out = decode_notes(canvas, mask, sounding, onset, velocity, (velocity > 0).float())
    assert torch.equal(out[~mask], canvas[~mask])
    assert out[0, 0, 2].tolist() == pytest.approx([0.337] * 3 + [round(0.337 * 127) / 127] * 2 + [0] * 3, abs=1e-7)
    assert out[0, 1, 2].tolist() == [1] + [0] * 7  # the known note goes on: no new onset
    assert out[0, 1, 0].tolist() == [0, 0, 0, 1, 0, 0, 0, 0] and (out[0, 0, 0, 3:] == round(0.25 * 127) / 127).all()
    assert torch.equal(out[0], out[1])


def test_notes_never_run_across_rows_or_batch_items() -> None:
    canvas, mask = _all_generated(batch=2)
    sounding = torch.ones(2, H, W, dtype=torch.bool)  # every row full: each row is one note
    onset = torch.zeros_like(sounding)
    velocity = torch.arange(2 * H, dtype=torch.float32).reshape(2, H, 1).expand(2, H, W) / 10 + 0.05
    out = decode_notes(canvas, mask, sounding, onset, velocity, torch.ones(2, H, W))
    assert torch.equal(out[:, 1, :, 0], torch.ones(2, H)) and not out[:, 1, :, 1:].any()
    assert torch.allclose(out[:, 0], (torch.round(velocity * 127) / 127), atol=1e-7)


@pytest.mark.parametrize("num_bins, note_states", [(128, True), (8, True), (2, False), (128, False)])
def test_pixel_states_follow_the_planes(num_bins: int, note_states: bool) -> None:
    states = PixelStates(num_bins, note_states)
    assert states.count == num_bins + (1 if note_states else 0)
    codes = np.zeros((128, 6), dtype=np.uint8)
    codes[60] = [0, 100 | 0x80, 100, 100, 3 | 0x80, 0]
    planes = torch.from_numpy(codes_to_planes(codes))[None]
    s = states.from_planes(planes)
    assert s.shape == (1, 128, 6) and s.dtype == torch.long
    assert not s[0, :60].any() and not s[0, 61:].any()
    row = s[0, 60].tolist()
    assert row[0] == SILENCE == row[5]
    velocity = states.velocity(s)[0, 60]
    if note_states:
        assert row[2] == row[3] == HOLD and row[1] > HOLD and row[4] > HOLD
        assert states.onset(s)[0, 60].tolist() == [False, True, False, False, True, False]
        assert velocity[2:4].tolist() == [0, 0]  # holds carry no velocity
    else:
        assert row[1] == row[2] == row[3] and not states.onset(s).any()
    assert states.sounding(s)[0, 60].tolist() == [False, True, True, True, True, False]
    if num_bins == 128:  # bins are the identity on MIDI velocities
        assert (velocity[[1, 4]] * 127).round().tolist() == [100, 3]
    elif num_bins == 2:
        assert (velocity[[1, 4]] * 127).round().tolist() == [64, 64]  # on / off: notes sound at the middle
    features = states.embed_input(s[0, 60].reshape(2, 3))
    assert features.shape == (2, 3 * PIXEL_FEATURES)
    per_pixel = features.reshape(6, PIXEL_FEATURES)
    assert per_pixel[:, 0].tolist() == [0, 1, 1, 1, 1, 0]  # sounding
    assert per_pixel[:, 1].tolist() == ([0, 1, 0, 0, 1, 0] if note_states else [0] * 6)  # onset
    assert per_pixel[0].abs().sum() == 0
    assert per_pixel[1, 2] == bin_velocities(velocity_bins(torch.tensor(100), num_bins), num_bins) / 127


def test_sampled_states_become_whole_notes_in_fractalgen() -> None:
    from fractalmidi.models import build

    model = build("fractal-tiny")
    ps = model.pixel_states
    onset_planes = torch.from_numpy(codes_to_planes(np.full((128, 1), 90 | 0x80, np.uint8)))
    onset_90 = int(ps.from_planes(onset_planes[None])[0, 0, 0])
    states = torch.zeros(1, 128, 16, dtype=torch.long)
    states[0, 40, 2:6] = torch.tensor([onset_90, HOLD, HOLD, onset_90])  # two notes, re-struck at 5
    states[0, 41, 0:3] = HOLD  # a hold after silence: a note as loud as the piece's others
    canvas = torch.zeros(1, 2, 128, 16)
    planes = model._planes(states, canvas, torch.ones_like(canvas, dtype=torch.bool))
    codes = planes_to_codes(planes[0].numpy())
    assert codes[40, :7].tolist() == [0, 0, 90 | 0x80, 90, 90, 90 | 0x80, 0]
    assert codes[41, :4].tolist() == [90 | 0x80, 90, 90, 0]
    assert np.count_nonzero(codes) == 7
