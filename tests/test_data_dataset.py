"""PianoRollDataset: crops, padding, pitch-shift bounds, determinism, workers (through the training loader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalmidi.cli import main
from fractalmidi.data import PianoRollDataset, PreparedData
from fractalmidi.data.grid import CROP_ALIGNS, parse_grid
from fractalmidi.data.roll import canonical_codes, planes_to_codes
from fractalmidi.errors import UserError
from fractalmidi.train.data import DataPosition, train_loader

SIXTEENTH = 120


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, make_midi):
    """Six pieces: long ones with notes at the extreme pitches 0 and 127, and one short piece."""
    root = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(0)
    for i in range(5):
        notes = [(int(rng.integers(30, 90)), t * SIXTEENTH, 2 * SIXTEENTH, int(rng.integers(20, 127)))
                 for t in range(0, 200, 2)]
        notes += [(0, 0, 400 * SIXTEENTH, 50), (127, 0, 400 * SIXTEENTH, 60)] if i == 0 else []
        notes += [(20, 0, 400 * SIXTEENTH, 50)] if i == 1 else []
        make_midi(root / f"long{i}.mid", notes)
    make_midi(root / "short.mid", [(60, 0, 10 * SIXTEENTH, 100)])
    out = tmp_path_factory.mktemp("prepared") / "data"
    assert main(["prepare", str(root), "--out", str(out), "--workers", "0", "--split", "1,0,0"]) == 0
    return out


def test_crops_have_the_right_shape_range_and_padding(prepared):
    data = PreparedData(prepared)
    ds = PianoRollDataset(prepared, crop_length=64, pitch_shift=(0, 0))
    assert len(ds) == 6
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (2, 128, 64) and x.dtype == torch.float32
        assert 0 <= x[0].min() and x[0].max() <= 1
        assert set(x[1].unique().tolist()) <= {0.0, 1.0}
        assert torch.all(x[0][x[1] > 0] > 0)  # onsets only where a note sounds
        assert torch.all(x[1][:, 0] == (x[0][:, 0] > 0).float())  # whatever sounds at step 0 starts there
    short = next(i for i in range(len(data)) if data.info(i)["path"].endswith("short.mid"))
    x = ds[ds.pieces.index(short)]
    assert torch.all(x[0, 60, :10] == 100 / 127) and torch.all(x[:, :, 10:] == 0)
    assert x[1, 60, :10].tolist() == [1.0] + [0.0] * 9 and x[1].sum() == 1


def test_crops_are_windows_of_the_piece(prepared):
    data = PreparedData(prepared)
    ds = PianoRollDataset(prepared, crop_length=32, pitch_shift=(0, 0))
    for i in range(len(ds)):
        crop = planes_to_codes(ds[i].numpy())
        piece = data.piece(ds.pieces[i])[0]
        # a window cut out of the piece is a piece of its own: a note sounding at its start starts there
        starts = [s for s in range(max(piece.shape[1] - 32, 0) + 1) if np.array_equal(
            crop[:, : min(32, piece.shape[1])], canonical_codes(piece[:, s : s + 32]))]
        assert starts, f"crop {i} is not a window of its piece"


@pytest.mark.parametrize("align", [1, 4, 16])
def test_crops_start_on_multiples_of_align(prepared, align: int):
    data = PreparedData(prepared)
    ds = PianoRollDataset(prepared, crop_length=32, pitch_shift=(0, 0), augment_factor=8, align=align)
    found = set()
    for i in range(len(ds)):
        piece = data.piece(ds.pieces[i % len(ds.pieces)])[0]
        if piece.shape[1] < 100:
            continue  # the short piece: one crop at 0
        crop = planes_to_codes(ds[i].numpy())
        starts = [s for s in range(piece.shape[1] - 31) if np.array_equal(crop, canonical_codes(piece[:, s : s + 32]))]
        assert starts
        if len(starts) == 1:  # random pitches every two steps: one window fits (not in a held-notes-only tail)
            found.add(starts[0])
    assert all(s % align == 0 for s in found) and len(found) > 8
    if align == 1:
        assert any(s % 4 for s in found)  # steps: off-beat starts too


def test_align_steps_follow_the_grid():
    assert [parse_grid("16th").align_steps(u) for u in CROP_ALIGNS] == [1, 4, 16]
    assert [parse_grid("quarter").align_steps(u) for u in CROP_ALIGNS] == [1, 1, 4]
    assert [parse_grid("fps:16").align_steps(u) for u in CROP_ALIGNS] == [1, 1, 1]  # no beats to align to
    with pytest.raises(UserError, match="crop alignment 'measure' is not one of step, beat, bar"):
        parse_grid("16th").align_steps("measure")


def test_pitch_shift_stays_in_range_and_uses_the_range(prepared):
    ds = PianoRollDataset(prepared, crop_length=48, pitch_shift=(-5, 5), augment_factor=8, seed=1)
    assert len(ds) == 48
    data = ds.data
    shifts = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            planes = ds[i]
            x = planes[0]
            piece = ds.pieces[i % len(ds.pieces)]
            # the amount of music is preserved: nothing fell off the top or bottom
            active = torch.nonzero(x.any(dim=1)).flatten()
            raw = PianoRollDataset(data, crop_length=48, pitch_shift=(0, 0), augment_factor=8, seed=1)
            raw.set_epoch(epoch)
            raw_planes = raw[i]
            y = raw_planes[0]
            assert torch.isclose(x.sum(), y.sum())
            y_active = torch.nonzero(y.any(dim=1)).flatten()
            if len(active):
                shift = int(active[0] - y_active[0])
                assert torch.equal(torch.roll(raw_planes, shift, dims=1), planes)  # onsets move with their notes
                assert -5 <= shift <= 5
                shifts.add(shift)
            if data.info(piece)["path"].endswith("long0.mid"):
                assert x[0].any() and x[127].any()  # pitches 0 and 127 sound: never shifted
            if data.info(piece)["path"].endswith("long1.mid") and active.numel():
                assert active[0] >= 15  # pitch 20 may move down by at most 5
    assert len(shifts) >= 8  # the whole range is drawn


def test_items_are_deterministic_given_seed_epoch_and_index(prepared):
    a = PianoRollDataset(prepared, crop_length=40, seed=7)
    b = PianoRollDataset(prepared, crop_length=40, seed=7)
    c = PianoRollDataset(prepared, crop_length=40, seed=8)
    b.set_epoch(2)
    assert torch.equal(a[(2, 3)], b[3])
    assert not torch.equal(a[(0, 3)], a[(1, 3)]) or not torch.equal(a[(0, 3)], a[(2, 3)])
    assert any(not torch.equal(a[i], c[i]) for i in range(len(a)))
    val = PianoRollDataset(prepared, crop_length=40, train=False, augment_factor=4, seed=7)
    assert len(val) == 6
    first = [val[i] for i in range(len(val))]
    val.set_epoch(5)
    assert all(torch.equal(x, val[i]) for i, x in enumerate(first))


def _epoch(ds: PianoRollDataset, epoch: int, num_workers: int) -> torch.Tensor:
    """One epoch (12 crops = 3 batches of 4) of the training loader, read from its start."""
    loader = train_loader(ds, batch_size=4, num_workers=num_workers, position=DataPosition(3 * epoch), seed=3)
    batches = iter(loader)
    return torch.cat([next(batches) for _ in range(3)])


def test_dataloader_workers_give_the_same_batches(prepared):
    ds = PianoRollDataset(prepared, crop_length=32, augment_factor=2, seed=3)
    assert len(ds) == 12
    single = _epoch(ds, 1, num_workers=0)
    multi = _epoch(ds, 1, num_workers=2)
    assert single.shape == (12, 2, 128, 32) and torch.equal(single, multi)
    assert not torch.equal(single, _epoch(ds, 2, num_workers=0))


def test_edge_crops_begin_or_end_with_their_piece(prepared):
    """With ``edge_crops``, items carry their edges; an edge crop starts at step 0 or ends with the piece's last
    bar (silence after the last note), about as often as asked; without it items stay plain rolls."""
    data = PreparedData(prepared)
    ds = PianoRollDataset(prepared, crop_length=64, pitch_shift=(0, 0), augment_factor=40, edge_crops=0.5, align=4)
    starts = ends = 0
    for i in range(len(ds)):
        item = ds[i]
        piece = data.piece(ds.pieces[i % len(ds.pieces)])[0]
        if piece.shape[1] < 100:
            assert item["edges"].tolist() == [True, True]  # the short piece is whole in every crop
            continue
        crop, (first, last) = planes_to_codes(item["roll"].numpy()), item["edges"].tolist()
        starts, ends = starts + first, ends + last
        if first:
            assert np.array_equal(crop, canonical_codes(piece[:, :64]))
        if last:
            end = -(-piece.shape[1] // 16) * 16
            tail = canonical_codes(piece[:, end - 64:])
            assert np.array_equal(crop[:, : tail.shape[1]], tail) and not crop[:, tail.shape[1]:].any()
    long_items = len(ds) * 5 // 6
    assert 0.2 < starts / long_items < 0.35 and 0.2 < ends / long_items < 0.35  # 0.25 each, plus chance
    plain = PianoRollDataset(prepared, crop_length=64, pitch_shift=(0, 0), augment_factor=2, align=4)
    assert isinstance(plain[0], torch.Tensor)
    with pytest.raises(UserError, match="edge crops"):
        PianoRollDataset(prepared, edge_crops=1.5)
