"""Loudness normalisation: a piece's loudness, velocity moves, training crops at one loudness, and a
loudness-normalised model whose pieces take loudness drawn from its data while an input keeps its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fractalmidi.canvas import continue_plan, unconditional_plan
from fractalmidi.data.loudness import (
    LOUDNESS_CENTER,
    draw_loudness,
    loudness_histogram,
    move_loudness,
    normalising_move,
    piece_loudness,
)
from fractalmidi.data.roll import ONSET_BIT, VELOCITY_BITS, codes_to_planes, planes_to_codes
from fractalmidi.inference import sample_plan

T = 32


def _piece(velocities: list[int], steps_per_note: int = 4) -> np.ndarray:
    """``(1, 128, T)`` codes: one note per velocity, in turn, on pitches 60, 62, ..."""
    codes = np.zeros((1, 128, len(velocities) * steps_per_note), dtype=np.uint8)
    for i, v in enumerate(velocities):
        codes[0, 60 + 2 * (i % 8), i * steps_per_note : (i + 1) * steps_per_note] = v
        codes[0, 60 + 2 * (i % 8), i * steps_per_note] |= ONSET_BIT
    return codes


def test_a_pieces_loudness_is_the_mean_velocity_of_its_notes() -> None:
    assert piece_loudness(_piece([60, 70, 95])) == 75
    assert piece_loudness(np.zeros((1, 128, 8), dtype=np.uint8)) is None
    assert normalising_move(_piece([60, 70, 95])) == LOUDNESS_CENTER - 75
    assert normalising_move(np.zeros((128, 8), dtype=np.uint8)) == 0


def test_moves_keep_onsets_and_silence_and_clip_to_the_velocity_range() -> None:
    codes = _piece([10, 100, 120])
    up, down = move_loudness(codes, 20), move_loudness(codes, -30)
    assert np.array_equal(up & ONSET_BIT, codes & ONSET_BIT) and np.array_equal(up > 0, codes > 0)
    assert sorted(set((up & VELOCITY_BITS)[codes > 0].tolist())) == [30, 120, 127]
    assert sorted(set((down & VELOCITY_BITS)[codes > 0].tolist())) == [1, 70, 90]  # a note never falls silent


def test_loudness_is_drawn_like_the_training_pieces() -> None:
    counts = loudness_histogram([70, 70, 70, 100])
    assert len(counts) == 128 and counts[70] == 3 and counts[100] == 1
    rng = np.random.default_rng(0)
    drawn = [draw_loudness(counts, rng.random()) for _ in range(2000)]
    assert set(drawn) == {70, 100} and drawn.count(70) / len(drawn) == pytest.approx(0.75, abs=0.03)
    assert draw_loudness([], rng.random()) == LOUDNESS_CENTER


@pytest.mark.data
def test_normalised_training_crops_sit_at_the_centre(prepared_jsb: Path) -> None:
    from fractalmidi.data import PianoRollDataset

    data = PianoRollDataset(prepared_jsb, split="train", crop_length=64, pitch_shift=(0, 0), loudness_normalize=True)
    assert len(data.loudness) == len(data.pieces)
    for i in range(0, len(data), 37):
        codes = planes_to_codes(data[(0, i)].numpy())
        assert piece_loudness(codes) in (None, LOUDNESS_CENTER)


class FixedPiece(nn.Module):
    """Stands in for a model: writes whole notes at the centre loudness wherever it may, and records the
    canvas it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: torch.Tensor | None = None
        self.sample_defaults: dict[str, object] = {}  # a generator's stored sampling options: none

    def sample(self, canvas: torch.Tensor, mask: torch.Tensor, **_: object) -> torch.Tensor:
        self.seen = canvas.clone()
        notes = np.zeros(canvas.shape[:1] + canvas.shape[2:], dtype=np.uint8)
        notes[:, 72, :] = LOUDNESS_CENTER - 5
        notes[:, 76, :] = LOUDNESS_CENTER + 5
        notes[:, (72, 76), ::4] |= ONSET_BIT
        return torch.where(mask, torch.from_numpy(codes_to_planes(notes)), canvas)


def test_pieces_move_to_a_drawn_loudness_and_an_input_keeps_its_own() -> None:
    model = FixedPiece()
    counts = loudness_histogram([100])
    result, _ = sample_plan(model, unconditional_plan(T, 16), 2, generator=torch.Generator().manual_seed(0),
                            loudness_counts=counts)
    assert all(piece_loudness(c) == 100 for c in planes_to_codes(result.numpy()))
    source = np.concatenate([_piece([50, 70] * 4), np.zeros((1, 128, 16), np.uint8)], axis=-1)  # loudness 60
    plan = continue_plan(source, 32, 32, 16)
    result, _ = sample_plan(model, plan, 1, loudness_counts=counts)
    codes = planes_to_codes(result.numpy())[0]
    assert np.array_equal(codes[:, :32], source[0, :, :32])  # the input exactly as given
    assert piece_loudness(planes_to_codes(model.seen.numpy())[0]) == LOUDNESS_CENTER  # the model saw it at 80
    assert piece_loudness(codes[:, 32:]) == 60  # the continuation at the input's loudness
    plain, _ = sample_plan(model, plan, 1)
    assert piece_loudness(planes_to_codes(plain.numpy())[0][:, 32:]) == LOUDNESS_CENTER
