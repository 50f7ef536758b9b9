"""``fractalmidi evaluate``: how close is a generated set to a reference set?

Musical statistics per piece (:mod:`.features`), overlapping area per feature and a Frechet
distance per set (:mod:`.metrics`), the reference's own train-vs-test (or half-vs-half)
values as a ceiling, and the likelihood under a checkpoint when its family has one.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from fractalmidi import __version__
from fractalmidi.errors import UserError
from fractalmidi.evaluate.features import FRECHET_DIMENSIONS, SCALAR_FEATURES
from fractalmidi.evaluate.metrics import FeatureSet, compare, feature_set, set_means
from fractalmidi.evaluate.sets import PieceSource, generated_source, reference_sources

REPORT_JSON, REPORT_MD = "report.json", "report.md"
DEFAULT_NLL_STEPS = 256
DEFAULT_NLL_BATCH = 4

OA_METHOD = (
    "OA (overlapping area, Yang & Lerch 2020 / MusPy) is computed on the feature distributions "
    "themselves: a scalar feature's per-piece values become a Gaussian KDE per set (Silverman "
    "bandwidth, floored at 0.1 x the pooled std) integrated on one shared grid, OA = integral of "
    "min(p, q); a histogram feature is the set's mean of per-piece normalised histograms on shared "
    "bins, OA = sum of bin-wise minima. 1 = identical distributions, 0 = disjoint."
)
FRECHET_METHOD = (
    "Frechet distance between Gaussians fitted to per-piece feature vectors (the scalar features "
    "plus the 12-bin pitch-class histogram), each dimension standardised by the reference set's "
    "mean and std (pooled std where the reference is constant); 0 = same mean and covariance. "
    "Small sets bias it upwards: compare it with the ceiling computed on sets of similar size."
)


def measure(source: PieceSource, progress: bool = True) -> FeatureSet:
    """Read every piece of ``source`` and compute its statistics (unreadable ones are listed)."""
    pieces, skipped = [], []
    for label, notes, reason in tqdm(source.notes(), total=len(source), desc=f"reading {source.name}", unit="piece",
                                     disable=not progress, leave=False):
        if notes is None:
            skipped.append((label, reason))
        else:
            pieces.append((label, notes))
    return feature_set(source.name, pieces, skipped)


def _set_summary(source: PieceSource, features: FeatureSet, kind: str) -> dict:
    return {
        "path": str(source.path),
        "kind": kind,
        "name": source.name,
        "pieces": len(features),
        "skipped": [{"file": f, "reason": r} for f, r in features.skipped],
    }


def _nll_section(checkpoint: Path, sources: dict[str, PieceSource], max_steps: int, batch_size: int) -> dict:
    from fractalmidi.data.key import normalising_shift, transpose
    from fractalmidi.data.loudness import LOUDNESS_CENTER, move_loudness, normalising_move
    from fractalmidi.evaluate.likelihood import set_nll, source_rolls
    from fractalmidi.inference import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    section: dict = {"checkpoint": str(checkpoint), "family": model.family, "preset": model.preset}
    if not model.has_likelihood:
        section["note"] = f"NLL skipped: the {model.family} family has no tractable likelihood."
        return section
    normalise = loaded.key_shifts is not None
    if normalise:
        section["key"] = "pieces scored in the model's key (each moved to C major / A minor first)"
    loudness = loaded.loudness_counts is not None
    if loudness:
        section["loudness"] = f"pieces scored at the model's loudness (each moved to mean velocity {LOUDNESS_CENTER})"
    for name, source in sources.items():
        rolls = source_rolls(source, loaded.grid)
        if normalise:
            rolls = [(label, transpose(roll, normalising_shift(roll))) for label, roll in rolls]
        if loudness:
            rolls = [(label, move_loudness(roll, normalising_move(roll))) for label, roll in rolls]
        section[name] = set_nll(model, rolls, max_steps=max_steps, batch_size=batch_size)
    flags = {section[name]["exact"] for name in sources} - {None}
    section["exact"] = flags.pop() if len(flags) == 1 else None
    section["estimate_reason"] = model.estimate_reason if section["exact"] is False else None
    return section


def evaluate(
    generated: Path,
    reference: Path,
    out: Path,
    *,
    checkpoint: Path | None = None,
    max_pieces: int | None = None,
    nll_steps: int = DEFAULT_NLL_STEPS,
    nll_batch_size: int = DEFAULT_NLL_BATCH,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Compare ``generated`` with ``reference`` and write the report folder ``out``; returns the report."""
    from fractalmidi.evaluate.report import PLOT_DIR, markdown, plot_distributions
    from fractalmidi.outdir import check_out_dir, plain_json, staged_dir, write_json, write_text

    if max_pieces is not None and max_pieces < 2:
        raise UserError(f"--max-pieces must be at least 2, got {max_pieces}")
    if nll_steps < 1 or nll_batch_size < 1:
        raise UserError("--nll-steps and --nll-batch-size must be positive")
    if checkpoint is not None:
        from fractalmidi.train.checkpoint import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint)  # a file, a run folder or a shipped model's name
    inputs = [generated, reference, checkpoint]
    check_out_dir(out, overwrite, inputs)
    started = time.perf_counter()
    gen_source = generated_source(generated, max_pieces, seed)
    ref_source, ceil_a, ceil_b, ceiling_kind = reference_sources(reference, max_pieces, seed, len(gen_source))

    gen = measure(gen_source, progress)
    ref = measure(ref_source, progress)
    ceil_first = measure(ceil_a, progress)
    ceil_second = ref if ceil_b is ref_source else measure(ceil_b, progress)
    if len(ref) == 0:
        raise UserError(f"--reference {reference}: no piece with notes could be read")

    report = {
        "fractalmidi_version": __version__,
        "generated": _set_summary(gen_source, gen, "midi"),
        "reference": _set_summary(ref_source, ref, ref_source.kind),
        "ceiling": {
            "kind": ceiling_kind,
            "sets": [ceil_first.name, ceil_second.name],
            "pieces": [len(ceil_first), len(ceil_second)],
            "metrics": compare(ceil_first, ceil_second),
        },
        "metrics": compare(gen, ref),
        "means": {"generated": set_means(gen), "reference": set_means(ref), "ceiling": set_means(ceil_first)},
        "features": {"scalar": SCALAR_FEATURES, "frechet_vector": list(FRECHET_DIMENSIONS)},
        "method": {"oa": OA_METHOD, "frechet": FRECHET_METHOD},
        "settings": {"max_pieces": max_pieces, "seed": seed, "nll_steps": nll_steps},
    }
    if checkpoint is not None:
        report["nll"] = _nll_section(Path(checkpoint), {"reference": ref_source, "generated": gen_source}, nll_steps,
                                     nll_batch_size)
    report["elapsed_s"] = round(time.perf_counter() - started, 3)
    report = plain_json(report)

    with staged_dir(out, overwrite, command="evaluate", inputs=inputs) as stage:
        report["plots"] = plot_distributions([gen, ref, ceil_first], stage / PLOT_DIR)
        write_json(stage / REPORT_JSON, report)
        write_text(stage / REPORT_MD, markdown(report), errors="backslashreplace")  # non-UTF-8 file names
    return report
