"""A batch's keys, loudness and labels: each drawn like the training pieces', the batch spread over them."""

from __future__ import annotations

import numpy as np

from fractalmidi.data.draw import pick, spread_quantiles
from fractalmidi.data.loudness import draw_loudness, loudness_histogram
from fractalmidi.data.style import draw_style


def test_spread_quantiles_put_one_in_each_stratum_and_each_is_uniform() -> None:
    rng = np.random.default_rng(0)
    batches = np.stack([spread_quantiles(8, rng) for _ in range(4000)])
    assert np.array_equal(np.sort(np.floor(batches * 8), axis=1), np.tile(np.arange(8.0), (4000, 1)))
    first = np.histogram(batches[:, 0], bins=10, range=(0, 1))[0] / 4000  # any one piece: uniform on [0, 1)
    assert np.allclose(first, 0.1, atol=0.015)
    assert spread_quantiles(1, rng).shape == (1,) and spread_quantiles(0, rng).shape == (0,)


def test_a_batch_covers_the_training_frequencies_and_a_piece_follows_them() -> None:
    counts = loudness_histogram([70, 70, 70, 100])
    rng = np.random.default_rng(1)
    for _ in range(50):  # every batch of 16 at the training pieces' 3 : 1, not only on average
        batch = [draw_loudness(counts, q) for q in spread_quantiles(16, rng)]
        assert batch.count(70) == 12 and batch.count(100) == 4
    loose = [sum(draw_loudness(counts, q) == 70 for q in rng.random(16)) for _ in range(50)]
    assert min(loose) < 12 < max(loose)  # independent draws wander from batch to batch
    labels = [draw_style([0, 3, 0, 0, 0, 0, 0, 0, 1], q) for q in spread_quantiles(8, rng)]
    assert sorted(labels) == [1] * 6 + [8] * 2


def test_pick_never_takes_a_zero_weight() -> None:
    weights = np.array([0.0, 2.0, 0.0, 1.0, 0.0])
    assert pick(weights, 0.0) == 1 and pick(weights, 0.66) == 1 and pick(weights, 0.67) == 3
    assert pick(weights, np.nextafter(1.0, 0.0)) == 3
    assert (15 + np.nextafter(1.0, 0.0)) / 16 == 1.0 and pick(weights, 1.0) == 3  # a spread quantile can round to 1
