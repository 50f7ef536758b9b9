"""Key normalisation: the key estimate, transpositions, training crops in one key, and a key-normalised
model that composes in other keys while keeping a given input exactly where it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic

from fractalmidi.cli import main
from fractalmidi.data.key import (
    PITCH_CLASSES,
    draw_shift,
    estimate_key,
    fit_shift,
    mean_pitch,
    normalising_shift,
    pitch_class_histogram,
    pitch_register,
    shift_histogram,
    transpose,
)
from fractalmidi.data.roll import NUM_PITCHES, ONSET_BIT

C_MAJOR = [0, 2, 4, 5, 7, 9, 11]
HARMONIC_MINOR = [0, 2, 3, 5, 7, 8, 11]


def _melody(tonic: int, scale: list[int], octave: int = 60, steps_per_note: int = 2) -> np.ndarray:
    """Uint8 codes of a scale run up and down with the tonic and fifth held longer (a clear key)."""
    degrees = [0, 1, 2, 3, 4, 5, 6, 4, 2, 0, 4, 0]
    roll = np.zeros((NUM_PITCHES, steps_per_note * len(degrees) * 2), dtype=np.uint8)
    t = 0
    for d in degrees:
        length = steps_per_note * (3 if d in (0, 4) else 1)
        pitch = octave + tonic + scale[d]
        roll[pitch, t:t + length] = 90
        roll[pitch, t] |= ONSET_BIT
        t += length
    return roll[:, :t]


@pytest.mark.parametrize("tonic", [0, 2, 7, 10])
def test_major_and_minor_scales_are_recognised_and_moved_to_the_white_keys(tonic: int) -> None:
    major = _melody(tonic, C_MAJOR)
    minor = _melody(tonic, HARMONIC_MINOR)
    assert estimate_key(major) == (tonic, True)
    assert estimate_key(minor) == (tonic, False)
    for roll in (major, minor):
        moved = transpose(roll, normalising_shift(roll))
        hist = pitch_class_histogram(moved)
        natural = hist[C_MAJOR].sum() + hist[8]  # A minor's raised seventh (G#) is its one black key
        assert natural == hist.sum()
        assert -6 <= normalising_shift(roll) <= 5
    assert estimate_key(np.zeros((NUM_PITCHES, 8), np.uint8)) is None
    assert normalising_shift(np.zeros((NUM_PITCHES, 8), np.uint8)) == 0


def test_transpose_is_exact_and_fit_shift_keeps_notes_on_the_keyboard() -> None:
    roll = _melody(0, C_MAJOR)
    assert np.array_equal(transpose(transpose(roll, 5), -5), roll)
    assert transpose(roll, 3)[63].any() and not transpose(roll, 3)[60].any()
    top = np.zeros((NUM_PITCHES, 4), np.uint8)
    top[125] = 90
    assert fit_shift(top, 5) == -7  # an octave down keeps the pitch class
    assert fit_shift(top, 2) == 2


def test_drawn_keys_follow_the_training_counts() -> None:
    counts = shift_histogram([0, 0, 0, 3, -6, 6])  # 6 wraps to -6
    assert counts[6] == 3 and counts[9] == 1 and counts[0] == 2 and sum(counts) == 6
    rng = np.random.default_rng(0)
    drawn = [draw_shift(counts, rng.random()) for _ in range(3000)]
    assert set(drawn) == {0, -3, 6}
    assert drawn.count(0) / len(drawn) == pytest.approx(0.5, abs=0.04)
    assert set(draw_shift([], rng.random()) for _ in range(500)) == set(range(-5, 7))  # uniform without counts
    assert len(counts) == PITCH_CLASSES


def test_drawn_keys_keep_a_piece_in_the_training_register() -> None:
    # chorales in C, G, D and F, always sung around E4 (64): moved to C, a piece that sits at 64 goes to C
    # (its own register) rather than up to D (66) or G (71 / 59)
    counts = shift_histogram([0, -7 + 12, -2, -5])
    register = pitch_register([63.5, 64.0, 64.5, 64.0])
    assert register == [64.0, 0.5]  # the spread is floored at MIN_REGISTER_SPREAD
    rng = np.random.default_rng(0)
    assert {draw_shift(counts, rng.random(), 64.0, register) for _ in range(200)} == {0}
    assert {draw_shift(counts, rng.random(), 62.0, register) for _ in range(200)} == {2}  # up to D: back at 64
    # a wider register allows the neighbouring keys, still only those the training pieces used
    drawn = [draw_shift(counts, rng.random(), 64.0, [64.0, 3.0]) for _ in range(2000)]
    assert set(drawn) <= {0, 2, 5, -5} and drawn.count(0) > drawn.count(5) > 0
    assert pitch_register([60.0]) is None  # one piece has no spread
    roll = np.zeros((1, NUM_PITCHES, 8), dtype=np.uint8)
    roll[0, 60, :6] = roll[0, 72, :2] = 90  # C4 for six steps, C5 for two
    assert mean_pitch(roll) == pytest.approx(63.0) and mean_pitch(roll[..., 6:] * 0) is None


@pytest.mark.data
def test_key_normalised_crops_are_in_c_major_or_a_minor(prepared_jsb: Path) -> None:
    from fractalmidi.data import PianoRollDataset

    plain = PianoRollDataset(prepared_jsb, split="train", crop_length=64, pitch_shift=(0, 0))
    normalised = PianoRollDataset(prepared_jsb, split="train", crop_length=64, pitch_shift=(0, 0), key_normalize=True)
    assert len(normalised.key_shifts) == len(normalised.pieces)

    def in_scale(dataset) -> float:
        total = np.zeros(PITCH_CLASSES)
        for i in range(0, len(dataset), 5):
            sounding = (dataset[(0, i)][0].numpy() > 0).astype(np.uint8)
            total += pitch_class_histogram(sounding)
        return total[C_MAJOR].sum() / total.sum()

    assert in_scale(normalised) > 0.85 > in_scale(plain)


@pytest.mark.data
def test_a_key_normalised_model_keeps_its_input_and_records_its_keys(tiny_fractal_checkpoint: Path,
                                                                     prepared_jsb: Path, tmp_path: Path) -> None:
    from fractalmidi.data import PreparedData, midi_to_roll, roll_to_midi
    from fractalmidi.inference import load_checkpoint

    loaded = load_checkpoint(tiny_fractal_checkpoint)  # trained key-normalised: the training default
    data = PreparedData(prepared_jsb)
    assert sum(loaded.key_shifts) == len(data.split("train")) and len(loaded.key_shifts) == PITCH_CLASSES
    mean, spread = loaded.key_register  # the training chorales' register, in their own keys
    assert 55 < mean < 70 and 0.5 <= spread < 6
    assert loaded.normalisation == {"key_shifts": loaded.key_shifts, "key_register": loaded.key_register,
                                    "loudness_counts": None}

    roll = data.piece(data.split("test")[1])[..., :32]
    assert normalising_shift(roll) != 0  # the input really has to move into the model's key and back
    path = tmp_path / "input.mid"
    roll_to_midi(roll, path)
    source = midi_to_roll(path)[0]
    fast = ["--checkpoint", str(tiny_fractal_checkpoint), "--device", "cpu", "--num-iter-list", "2", "1", "1",
            "--seed", "3"]
    assert main(["generate", "--out", str(tmp_path / "c"), "--mode", "continue",
                 "--input", str(path), "--condition-length", "16", "--length", "16", *fast]) == 0
    written = midi_to_roll(tmp_path / "c" / "sample_000.mid")[0]
    assert np.array_equal(written[0, :, :16], source[0, :, :16])
    assert main(["generate", "--out", str(tmp_path / "u"), "--length", "32",
                 "--num-samples", "2", *fast]) == 0
    record = json.loads((tmp_path / "u" / "samples.json").read_text())
    assert all(symusic.Score(str(tmp_path / "u" / s["mid"])).note_num() == s["notes"] for s in record["samples"])
