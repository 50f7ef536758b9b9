"""MIDI <-> piano-roll on generated files and on POP909: grid, offset, merge, sustain, note codes
(velocity + onset bit), round trip."""

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
from fractalmidi.data.roll import (
    ONSET_BIT,
    VELOCITY_BITS,
    as_uint8_roll,
    canonical_codes,
    codes_to_planes,
    planes_to_codes,
)
from fractalmidi.errors import UserError

TPQ = 480
SIXTEENTH = TPQ // 4


def test_notes_land_on_their_16th_cells(tmp_path, make_midi):
    notes = [(60, 0, 4 * SIXTEENTH, 100), (64, 2 * SIXTEENTH, 2 * SIXTEENTH, 50), (67, 8 * SIXTEENTH, SIXTEENTH, 127)]
    roll, meta = midi_to_roll(make_midi(tmp_path / "a.mid", notes, tempo=96.0))
    assert roll.dtype == np.uint8 and roll.shape == (1, 128, 9)
    assert roll[0, 60].tolist() == [100 | ONSET_BIT] + [100] * 3 + [0] * 5
    assert roll[0, 64].tolist() == [0, 0, 50 | ONSET_BIT, 50, 0, 0, 0, 0, 0]
    assert roll[0, 67, 8] == 127 | ONSET_BIT
    assert (roll & VELOCITY_BITS).astype(int).sum() == 400 + 100 + 127
    assert list(zip(*np.nonzero(roll[0] & ONSET_BIT))) == [(60, 0), (64, 2), (67, 8)]
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
    quantised, meta = midi_notes(tmp_path / "shifted.mid")
    assert sorted(quantised.onset.tolist()) == (steps + meta["beat_shift_steps"]).tolist()


@pytest.mark.parametrize("late", [0, 1, 2, 3])
def test_beats_a_few_16ths_off_the_grid_are_moved_onto_it(tmp_path, make_midi, late):
    """A transcription whose beats sit ``late`` 16ths (plus a sub-step offset) after the grid's: even 16th
    runs everywhere, so onsets alone do not tell the beat, but the bass's quarter notes do."""
    bars = 4
    runs = [(72 + s % 5, s * SIXTEENTH, SIXTEENTH, 70) for s in range(16 * bars)]
    bass = [(36 + b % 3, b * 4 * SIXTEENTH, 4 * SIXTEENTH, 90) for b in range(4 * bars)]
    offset = late * SIXTEENTH + 29
    notes = [(p, t + offset, d, v) for p, t, d, v in runs + bass]
    quantised, meta = midi_notes(make_midi(tmp_path / "late.mid", notes))
    shift = (4 - late) % 4
    assert meta["beat_shift_steps"] == shift
    bass_onsets = np.sort(quantised.onset[quantised.pitch < 48])
    assert bass_onsets.tolist() == list(range(late + shift, late + shift + 16 * bars, 4))
    assert bass_onsets[0] % 4 == 0 and np.all(quantised.onset >= late)


def test_tracks_merge_by_max_velocity_and_drums_are_skipped(tmp_path, make_midi):
    from symusic import Note, Score, Track

    path = make_midi(tmp_path / "x.mid", [(60, 0, 4 * SIXTEENTH, 40)], drum_notes=[(36, 0, SIXTEENTH, 120)])
    score = Score(str(path))
    second = Track("strings", 48, False)
    second.notes.append(Note(0, 4 * SIXTEENTH, 60, 90))
    score.tracks.append(second)
    roll, _ = midi_to_roll(score)
    assert roll[0, 60].tolist() == [90 | ONSET_BIT] + [90] * 3
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
    # float planes (what models produce) give the same notes
    again = roll_to_midi(codes_to_planes(roll[0]))
    assert again.note_num() == score.note_num()
    assert np.array_equal(as_uint8_roll(codes_to_planes(roll[0])), roll[0])
    # velocities alone (no onsets) join touching notes of a pitch: fewer notes, none lost in time
    velocity_only = roll_to_notes((roll & VELOCITY_BITS).astype(np.float32) / 127.0)
    assert 0 < len(velocity_only) < len(roll_to_notes(roll))
    assert np.array_equal(canonical_codes(roll & VELOCITY_BITS) > 0, roll > 0)


def test_onsets_split_notes_and_a_restrike_at_equal_velocity_stays_two_notes():
    roll = np.zeros((1, 128, 8), dtype=np.uint8)
    roll[0, 60, 0:3] = 100
    roll[0, 60, 0] |= ONSET_BIT
    roll[0, 60, 3:5] = 60
    roll[0, 60, 3] |= ONSET_BIT  # played softer right after: a new note
    roll[0, 60, 5:8] = 60
    roll[0, 60, 5] |= ONSET_BIT  # re-struck at the same velocity: still a new note
    notes = roll_to_notes(roll)
    assert notes.onset.tolist() == [0, 3, 5] and notes.end.tolist() == [3, 5, 8]
    assert notes.velocity.tolist() == [100, 60, 60] and notes.pitch.tolist() == [60] * 3


def test_velocity_change_without_an_onset_bit_does_not_split_a_note():
    roll = np.zeros((128, 6), dtype=np.uint8)
    roll[60] = [100 | ONSET_BIT, 100, 60, 60, 30, 0]  # held frames drift in velocity: one note
    notes = roll_to_notes(roll)
    assert notes.onset.tolist() == [0] and notes.end.tolist() == [5] and notes.velocity.tolist() == [100]
    # canonical codes repeat the onset velocity over the note
    assert canonical_codes(roll)[60].tolist() == [100 | ONSET_BIT, 100, 100, 100, 100, 0]


def test_round_trip_keeps_adjacent_restrikes_of_equal_velocity_as_two_notes(tmp_path, make_midi):
    notes = [(60, 0, 2 * SIXTEENTH, 80), (60, 2 * SIXTEENTH, 3 * SIXTEENTH, 80),  # touching, same velocity
             (60, 5 * SIXTEENTH, SIXTEENTH, 80), (64, 0, 6 * SIXTEENTH, 50)]
    src = make_midi(tmp_path / "restrike.mid", notes)
    roll, meta = midi_to_roll(src)
    assert meta["notes"] == 4 and meta["collisions"] == 0
    assert roll[0, 60].tolist() == [80 | ONSET_BIT, 80, 80 | ONSET_BIT, 80, 80, 80 | ONSET_BIT]
    decoded = roll_to_notes(roll)
    assert sorted(zip(decoded.pitch.tolist(), decoded.onset.tolist(), decoded.end.tolist(),
                      decoded.velocity.tolist())) == [(60, 0, 2, 80), (60, 2, 5, 80), (60, 5, 6, 80), (64, 0, 6, 50)]
    score = roll_to_midi(roll, tmp_path / "back.mid")
    assert score.note_num() == 4
    back, _ = midi_to_roll(tmp_path / "back.mid")
    assert np.array_equal(back, roll)
    # through the model's planes too
    assert np.array_equal(planes_to_codes(codes_to_planes(roll)), roll)


def test_two_onsets_of_a_pitch_in_one_cell_are_merged_and_counted(tmp_path, make_midi):
    notes = [(60, 0, SIXTEENTH, 70), (60, 10, SIXTEENTH, 90),  # two onsets of 60 in cell 0
             (62, 4 * SIXTEENTH, SIXTEENTH, 50), (62, 4 * SIXTEENTH + 5, 2 * SIXTEENTH, 40),  # two in cell 4
             (62, 4 * SIXTEENTH + 20, SIXTEENTH, 30),  # and a third
             (64, 0, SIXTEENTH, 80), (64, SIXTEENTH, SIXTEENTH, 80),  # neighbouring cells: no collision
             (66, 0, SIXTEENTH, 60), (66, 0, 2 * SIXTEENTH, 90)]  # one attack doubled (a unison): merged, not counted
    quantised, meta = midi_notes(make_midi(tmp_path / "c.mid", notes))
    assert meta["collisions"] == quantised.collisions == 3 and meta["source_notes"] == 9
    assert len(quantised) == 5
    merged = {(p, o): (e, v) for p, o, e, v in zip(quantised.pitch.tolist(), quantised.onset.tolist(),
                                                  quantised.end.tolist(), quantised.velocity.tolist())}
    assert merged[(60, 0)] == (1, 90) and merged[(62, 4)] == (6, 50)  # loudest and longest survive
    assert merged[(64, 0)] == (1, 80) and merged[(64, 1)] == (2, 80)
    assert merged[(66, 0)] == (2, 90)


def test_canonical_codes_add_onsets_after_silence_and_carry_the_onset_velocity():
    codes = np.zeros((2, 128, 7), dtype=np.uint8)
    codes[0, 40] = [0, 50, 50, 0, 70, 90, 0]  # no bits at all: onsets where sound starts
    codes[0, 41] = [ONSET_BIT, 0, 0, 0, 0, 0, 0]  # an onset bit on silence is dropped
    codes[1, 42] = [30, 30 | ONSET_BIT, 99, 99, 99 | ONSET_BIT, 12, 12]  # bits kept, velocity forward-filled
    out = canonical_codes(codes)
    assert out.dtype == np.uint8 and out.shape == codes.shape
    assert out[0, 40].tolist() == [0, 50 | ONSET_BIT, 50, 0, 70 | ONSET_BIT, 70, 0]
    assert not out[0, 41].any()
    assert out[1, 42].tolist() == [30 | ONSET_BIT, 30 | ONSET_BIT, 30, 30, 99 | ONSET_BIT, 99, 99]
    assert np.count_nonzero(out) == np.count_nonzero(codes & VELOCITY_BITS)  # silence stays silence
    assert np.array_equal(canonical_codes(out), out)  # idempotent
    # planes carry the same information, batched over leading axes
    planes = codes_to_planes(codes)
    assert planes.shape == (2, 2, 128, 7) and planes.dtype == np.float32
    assert planes[1, 0, 42].tolist() == pytest.approx([30 / 127] * 4 + [99 / 127] * 3)
    assert planes[1, 1, 42].tolist() == [1, 1, 0, 0, 1, 0, 0]
    assert np.array_equal(planes_to_codes(planes), out)


def test_as_uint8_roll_reads_codes_planes_and_velocity_floats():
    import torch

    codes = np.zeros((128, 5), dtype=np.uint8)
    codes[60] = [90 | ONSET_BIT, 90, 90 | ONSET_BIT, 90, 0]
    planes = codes_to_planes(codes)
    assert np.array_equal(as_uint8_roll(codes[None]), codes)
    assert np.array_equal(as_uint8_roll(torch.from_numpy(planes)), codes)
    velocity_only = as_uint8_roll(planes[:1])  # (1, 128, T) float velocities: one note
    assert velocity_only[60].tolist() == [90 | ONSET_BIT, 90, 90, 90, 0]
    with pytest.raises(UserError, match=r"\(1, 128, T\)"):
        as_uint8_roll(np.zeros((3, 128, 4), dtype=np.float32))


def test_onset_f1_matches_pitch_and_step():
    roll = np.zeros((1, 128, 16), dtype=np.uint8)
    roll[0, [60, 62, 64, 65], [0, 4, 8, 12]] = 80
    ref = roll_to_notes(roll)
    est_roll = roll.copy()
    est_roll[0, 65, 12] = 0  # one missed
    est_roll[0, 66, 12] = 80  # one wrong pitch
    est_roll[0, 60, 1] = 90 | ONSET_BIT  # a re-strike: an extra onset
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
