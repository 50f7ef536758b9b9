"""Set-level comparison: overlapping area (OA) per feature and a Frechet distance.

OA follows the "overlapping area" of Yang & Lerch (2020, "On the evaluation of generative
models in music") and MusPy, applied directly to the feature distributions rather than to
intra/inter-set distance distributions:

- a scalar feature (one value per piece): each set's values become a Gaussian KDE
  (Silverman bandwidth, floored at :data:`BANDWIDTH_FLOOR` of the pooled standard deviation),
  both evaluated and normalised on one shared grid; OA = integral of min(p, q);
- a histogram feature (pitch, pitch class, duration, IOI, velocity, polyphony): each set's
  mean of its per-piece normalised histograms (every piece weighs the same) on shared bins;
  OA = sum of bin-wise minima.

Both give 1 for identical sets and 0 for disjoint ones. The Frechet distance compares the
Gaussians fitted to per-piece feature vectors, standardised by the reference set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from fractalmidi.evaluate.features import (
    FRECHET_DIMENSIONS,
    HISTOGRAM_FEATURES,
    SCALAR_FEATURES,
    Notes,
    frechet_vector,
    piece_features,
)

KDE_GRID_POINTS = 1024
"""Points of the shared grid on which both KDEs are integrated."""
KDE_GRID_MARGIN = 4.0
"""The grid extends this many bandwidths beyond the pooled data."""
BANDWIDTH_FLOOR = 0.1
"""Smallest KDE bandwidth as a fraction of the pooled standard deviation (a set whose values
are all equal, or a single piece, still gets a density)."""
FRECHET_EPS = 1e-6
"""Diagonal offset when the covariance product is singular (as in the usual FID code)."""


@dataclass
class FeatureSet:
    """Per-piece statistics of a set of pieces (pieces without notes are listed, not measured)."""

    name: str
    files: list[str] = field(default_factory=list)
    scalars: np.ndarray = field(default_factory=lambda: np.zeros((0, len(SCALAR_FEATURES))))
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, len(FRECHET_DIMENSIONS))))
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)


def feature_set(name: str, pieces: Iterable[tuple[str, Notes]], skipped: Iterable[tuple[str, str]] = ()) -> FeatureSet:
    """Measure every piece; a piece without notes goes to ``skipped`` with the reason."""
    out = FeatureSet(name=name, skipped=list(skipped))
    measured = []
    for label, notes in pieces:
        feats = piece_features(notes)
        if feats is None:
            out.skipped.append((label, "no notes"))
            continue
        out.files.append(label)
        measured.append(feats)
    if measured:
        out.scalars = np.array([[f.scalars[k] for k in SCALAR_FEATURES] for f in measured])
        out.vectors = np.stack([frechet_vector(f) for f in measured])
    out.histograms = {
        k: np.stack([f.histograms[k] for f in measured]) if measured else np.zeros((0, bins))
        for k, bins in HISTOGRAM_FEATURES.items()
    }
    return out


def bandwidth(values: np.ndarray, floor: float) -> float:
    """Silverman's rule of thumb, never below ``floor``."""
    if values.size < 2:
        return floor
    std = values.std(ddof=1)
    iqr = np.subtract(*np.percentile(values, [75, 25]))
    spread = min(std, iqr / 1.34) if iqr > 0 else std
    return max(0.9 * spread * values.size ** (-0.2), floor)


def kde_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """OA of two 1-D samples through Gaussian KDEs on a shared grid (1 = identical)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    pooled = np.concatenate([a, b])
    pooled_std = pooled.std()
    if pooled_std == 0:
        return 1.0  # every value of both sets is the same number
    floor = BANDWIDTH_FLOOR * pooled_std
    bw_a, bw_b = bandwidth(a, floor), bandwidth(b, floor)
    margin = KDE_GRID_MARGIN * max(bw_a, bw_b)
    grid = np.linspace(pooled.min() - margin, pooled.max() + margin, KDE_GRID_POINTS)
    overlap = np.minimum(kde_density(a, grid, bw_a), kde_density(b, grid, bw_b))
    return float(np.clip(trapezoid(overlap, grid), 0.0, 1.0))


def trapezoid(y: np.ndarray, grid: np.ndarray) -> float:
    """Trapezoid rule on an evenly spaced grid (no scipy.integrate import: it is slow to load)."""
    step = grid[1] - grid[0]
    return float(step * (y.sum() - 0.5 * (y[0] + y[-1])))


def kde_density(values: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    """Gaussian KDE of ``values`` on ``grid``, normalised to integrate to 1 on the grid."""
    dens = np.exp(-0.5 * ((grid[:, None] - np.asarray(values, dtype=np.float64)[None, :]) / bw) ** 2).sum(axis=1)
    total = trapezoid(dens, grid)
    return dens / total if total > 0 else dens


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """OA of the mean normalised histograms of two sets ``(N, bins)`` on shared bins."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(np.clip(np.minimum(a.mean(axis=0), b.mean(axis=0)).sum(), 0.0, 1.0))


def _standardiser(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference mean and std; a dimension constant in the reference uses the pooled std (else 1)."""
    mean = reference.mean(axis=0)
    std = reference.std(axis=0)
    pooled = np.concatenate([reference, other]).std(axis=0)
    std = np.where(std > 0, std, np.where(pooled > 0, pooled, 1.0))
    return mean, std


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=0)
    cov = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    return mu, np.atleast_2d(cov)


def frechet_distance(generated: np.ndarray, reference: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to per-piece vectors, standardised by the reference.

    A piece whose vector is not finite (a broken file measured as infinite durations) is left out."""
    generated = generated[np.isfinite(generated).all(axis=1)] if len(generated) else generated
    reference = reference[np.isfinite(reference).all(axis=1)] if len(reference) else reference
    if len(generated) == 0 or len(reference) == 0:
        return float("nan")
    mean, std = _standardiser(reference, generated)
    mu1, cov1 = _gaussian((generated - mean) / std)
    mu2, cov2 = _gaussian((reference - mean) / std)
    with warnings.catch_warnings():  # few pieces make singular covariances: handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(cov1)) * FRECHET_EPS
            covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean), 0.0))


def compare(generated: FeatureSet, reference: FeatureSet) -> dict:
    """Every set-level number: OA per feature (and their mean), Frechet distance, set means."""
    oa = {name: kde_overlap(generated.scalars[:, k], reference.scalars[:, k]) for k, name in enumerate(SCALAR_FEATURES)}
    oa.update({f"{name}_histogram": histogram_overlap(generated.histograms[name], reference.histograms[name])
               for name in HISTOGRAM_FEATURES})
    values = [v for v in oa.values() if np.isfinite(v)]
    return {
        "pieces": {"generated": len(generated), "reference": len(reference)},
        "oa": oa,
        "oa_mean": float(np.mean(values)) if values else float("nan"),
        "frechet": frechet_distance(generated.vectors, reference.vectors),
    }


def set_means(features: FeatureSet) -> dict[str, float]:
    """Mean of every scalar feature over the set (NaN for an empty set)."""
    if len(features) == 0:
        return {name: float("nan") for name in SCALAR_FEATURES}
    return {name: float(v) for name, v in zip(SCALAR_FEATURES, features.scalars.mean(axis=0))}
