"""Texture: the voice count the training music keeps (a melody's 1, a chorale's 4, none for free textures);
training pins it as a JiT sampler's voice cap (tests/test_train_run.py)."""

from __future__ import annotations

import numpy as np

from fractalmidi.data.texture import fixed_voices, voice_histogram


def _frames(voices: list[int]) -> np.ndarray:
    """``(T, 128)`` codes with ``voices[t]`` pitches sounding at step ``t``."""
    out = np.zeros((len(voices), 128), dtype=np.uint8)
    for t, n in enumerate(voices):
        out[t, 60 : 60 + n] = 90
    return out


def test_voice_histogram_counts_steps_by_pitches_sounding() -> None:
    counts = voice_histogram([_frames([0, 1, 1, 4]), _frames([4, 4, 2])])
    assert counts.shape == (129,)
    assert counts[:6].tolist() == [1, 2, 1, 0, 3, 0] and counts.sum() == 7


def test_fixed_voices_is_the_count_most_steps_share() -> None:
    rng = np.random.default_rng(0)
    melody = [1] * 97 + [2] * 3 + [0] * 40  # rests do not count against it
    chorale = [4] * 85 + [3] * 8 + [5] * 7
    free = rng.integers(1, 7, size=300).tolist()  # 1..6 voices alike
    assert fixed_voices(voice_histogram([_frames(melody)])) == 1
    assert fixed_voices(voice_histogram([_frames(chorale)])) == 4
    assert fixed_voices(voice_histogram([_frames(free)])) == 0
    assert fixed_voices(voice_histogram([_frames([0, 0])])) == 0

