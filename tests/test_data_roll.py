"""MIDI <-> piano-roll on generated files and on POP909: grid, offset, merge, sustain, round trip."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fractalmidi.data import (
    BadMidiError,
    PieceTooLongError,
    midi_notes,
    midi_to_roll,
    onset_f1,
    roll_to_midi,
    roll_to_notes,
    round_trip_f1,
)

TPQ = 480
SIXTEENTH = TPQ // 4


def test_notes_land_on_their_16th_cells(tmp_path, make_midi):
    notes = [(60, 0, 4 * SIXTEENTH, 100), (64, 2 * SIXTEENTH, 2 * SIXTEENTH, 50), (67, 8 * SIXTEENTH, SIXTEENTH, 127)]
    roll, meta = midi_to_roll(make_midi(tmp_path / "a.mid", notes, tempo=96.0))
    assert roll.dtype == np.uint8 and roll.shape == (1, 128, 9)
    assert roll[0, 60].tolist() == [100] * 4 + [0] * 5
    assert roll[0, 64].tolist() == [0, 0, 50, 50, 0, 0, 0, 0, 0]
    assert roll[0, 67, 8] == 127 and roll.sum() == 400 + 100 + 127
    assert meta["tempo_bpm"] == pytest.approx(96.0) and meta["grid"] == "16th" and meta["steps"] == 9
    assert meta["grid_offset_steps"] == pytest.approx(0.0)


def test_constant_offset_is_detected_and_removed(tmp_path, make_midi):
    rng = np.random.default_rng(0)
    shift = 37  # ticks, ~0.31 of a 16th
    steps = np.sort(rng.choice(256, size=80, replace=False))
    jitter = rng.integers(-4, 5, size=steps.size)
    notes = [(60 + int(s) % 24, int(s) * SIXTEENTH + shift + int(j), SIXTEENTH, 80) for s, j in zip(steps, jitter)]
    _, meta = midi_to_roll(make_midi(tmp_path / "shifted.mid", notes))
    assert meta["grid_offset_steps"] == pytest.approx(shift / SIXTEENTH, abs=0.03)
    assert meta["on_grid_raw"] < 0.05 and meta["on_grid"] == 1.0
    quantised, _ = midi_notes(tmp_path / "shifted.mid")
    assert sorted(quantised.onset.tolist()) == steps.tolist()


def test_tracks_merge_by_max_velocity_and_drums_are_skipped(tmp_path, make_midi):
    from symusic import Note, Score, Track

    path = make_midi(tmp_path / "x.mid", [(60, 0, 4 * SIXTEENTH, 40)], drum_notes=[(36, 0, SIXTEENTH, 120)])
    score = Score(str(path))
    second = Track("strings", 48, False)
    second.notes.append(Note(0, 4 * SIXTEENTH, 60, 90))
    score.tracks.append(second)
    roll, _ = midi_to_roll(score)
    assert roll[0, 60].tolist() == [90] * 4
    assert roll[0, 36].sum() == 0  # the drum kit's kick is not a pitch


def test_sustain_pedal_extends_released_notes(tmp_path, make_midi):
    notes = [(60, 0, SIXTEENTH, 70), (72, 8 * SIXTEENTH, SIXTEENTH, 70)]
    path = make_midi(tmp_path / "ped.mid", notes, pedals=[(0, 6 * SIXTEENTH)])
    plain, _ = midi_to_roll(path)
    held, meta = midi_to_roll(path, sustain=True)
    assert np.count_nonzero(plain[0, 60]) == 1
    assert np.count_nonzero(held[0, 60]) == 6 and meta["sustain"]
    assert np.count_nonzero(held[0, 72]) == 1  # released after the pedal went up


def test_fps_grid_uses_seconds(tmp_path, make_midi):
    # 120 BPM: a quarter is 0.5 s = 8 frames at fps:16
    roll, meta = midi_to_roll(make_midi(tmp_path / "f.mid", [(62, TPQ, TPQ, 64)]), grid="fps:16")
    assert meta["grid"] == "fps:16"
    assert np.flatnonzero(roll[0, 62]).tolist() == list(range(8, 16))


def test_round_trip_is_exact_for_distinct_notes(tmp_path, make_midi):
    rng = np.random.default_rng(1)
    notes = []
    for pitch in range(40, 90, 3):
        t = 0
        while t < 120:
            length = int(rng.integers(1, 6))
            notes.append((pitch, t * SIXTEENTH, length * SIXTEENTH, int(rng.integers(1, 128))))
            t += length + int(rng.integers(0, 3))
    src = make_midi(tmp_path / "src.mid", notes, tempo=87.0)
    roll, meta = midi_to_roll(src)
    out = tmp_path / "out.mid"
    score = roll_to_midi(roll, out, tempo_bpm=meta["tempo_bpm"])
    back, meta2 = midi_to_roll(out)
    assert np.array_equal(back[..., : roll.shape[-1]], roll)
    assert meta2["tempo_bpm"] == pytest.approx(87.0, abs=0.01)
    assert score.note_num() == len(roll_to_notes(roll))
    # a float roll in [0, 1] (what models produce) gives the same notes
    again = roll_to_midi(roll.astype(np.float32) / 127.0)
    assert again.note_num() == score.note_num()


def test_velocity_change_splits_a_run_and_equal_restrike_merges():
    roll = np.zeros((1, 128, 8), dtype=np.uint8)
    roll[0, 60, 0:3] = 100
    roll[0, 60, 3:5] = 60  # played softer right after: a new note
    roll[0, 60, 5:8] = 60  # same velocity again: indistinguishable from a held note
    notes = roll_to_notes(roll)
    assert notes.onset.tolist() == [0, 3] and notes.end.tolist() == [3, 8]
    assert notes.velocity.tolist() == [100, 60]


def test_onset_f1_matches_pitch_and_step():
    roll = np.zeros((1, 128, 16), dtype=np.uint8)
    roll[0, [60, 62, 64, 65], [0, 4, 8, 12]] = 80
    ref = roll_to_notes(roll)
    est_roll = roll.copy()
    est_roll[0, 65, 12] = 0  # one missed
    est_roll[0, 66, 12] = 80  # one wrong pitch
    est_roll[0, 60, 1] = 90  # a velocity change: an extra onset
    scores = onset_f1(ref, roll_to_notes(est_roll))
    assert scores["recall"] == pytest.approx(3 / 4) and scores["precision"] == pytest.approx(3 / 5)
    assert scores["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"hello, this is text\n", "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x04\x00\x00\x90", "unreadable MIDI"),
])
def test_bad_files_raise_bad_midi_error(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(BadMidiError, match=reason):
        midi_to_roll(path)


def test_no_notes_is_a_bad_midi(tmp_path, make_midi):
    with pytest.raises(BadMidiError, match="no notes"):
        midi_to_roll(make_midi(tmp_path / "silent.mid", []))


def test_huge_note_is_refused_before_allocating(tmp_path, huge_note_midi):
    path = huge_note_midi(tmp_path / "huge.mid")
    tracemalloc.start()
    with pytest.raises(PieceTooLongError, match="too long: 1073741820 steps"):
        midi_to_roll(path, max_steps=16384)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20


@pytest.mark.data
def test_pop909_offset_removal_puts_onsets_on_the_grid(pop909_dir):
    files = sorted(pop909_dir.glob("*.mid"))[::15]  # 61 songs spread over the set
    before, after = [], []
    for path in files:
        _, meta = midi_notes(path)
        before.append(meta["on_grid_raw"])
        after.append(meta["on_grid"])
    assert len(files) >= 60
    assert np.median(before) < 0.2
    assert np.median(after) >= 0.90


@pytest.mark.data
def test_pop909_round_trip_onset_f1(pop909_dir):
    files = sorted(pop909_dir.glob("*.mid"))[::10]
    scores = [round_trip_f1(path)["f1"] for path in files]
    assert np.mean(scores) >= 0.98
    assert min(scores) >= 0.9
