"""Whole-piece choices for a batch: spread over the training frequencies, not left to chance.

A generated piece takes its key, its loudness and its style label from the training pieces' frequencies.
Drawn one by one, a batch of 16 easily puts half its pieces at one loudness or in one key, and a set's
statistics wander from seed to seed (POP909 velocity-histogram OA 0.81-0.92 over four seeds). Drawn as a
stratified sample, every piece still follows the training frequencies (its quantile is uniform on
``[0, 1)``) and the batch as a whole covers them: one quantile falls in each ``1/n`` of the range, in an
order drawn at random.
"""

from __future__ import annotations

import numpy as np


def spread_quantiles(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` quantiles, one uniform in each ``1/count`` of ``[0, 1)``, in random order."""
    return (rng.permutation(count) + rng.random(count)) / max(count, 1)


def pick(weights: np.ndarray, quantile: float) -> int:
    """The index where ``quantile`` falls in the cumulative ``weights`` (positive total; zero weights never)."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    index = int(np.searchsorted(cumulative / cumulative[-1], quantile, side="right"))
    # a spread quantile can round to exactly 1.0 ((n - 1 + r) / n): it takes the last positive weight
    return min(index, int(np.flatnonzero(cumulative == cumulative[-1])[0]))
