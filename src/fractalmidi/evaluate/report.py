"""The evaluation report: ``report.json``, a readable ``report.md`` and distribution plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fractalmidi.evaluate.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, VELOCITY_BIN
from fractalmidi.evaluate.metrics import BANDWIDTH_FLOOR, FeatureSet, bandwidth, kde_density

PLOT_DIR = "plots"
SCALAR_PLOT = "scalar_features.png"
HISTOGRAM_PLOT = "histogram_features.png"
PLOT_GRID_POINTS = 256
PLOT_COLUMNS = 4
PLOT_DPI = 80
SUBPLOT_SPACING = {"left": 0.05, "right": 0.98, "bottom": 0.08, "top": 0.94, "wspace": 0.25, "hspace": 0.45}
HISTOGRAM_AXES: dict[str, tuple[int, int, str]] = {
    "pitch": (0, 1, "MIDI pitch"),
    "pitch_class": (0, 1, "pitch class (0 = C)"),
    "duration": (1, 1, "duration (16ths)"),
    "ioi": (1, 1, "inter-onset interval (16ths)"),
    "velocity": (0, VELOCITY_BIN, "velocity"),
    "polyphony": (1, 1, "sounding notes"),
}
"""Histogram bin k is drawn at ``first + k * width`` with this axis label."""
SET_STYLES = (("tab:red", "-"), ("tab:blue", "-"), ("tab:gray", "--"))
"""Generated, reference, ceiling set."""
LIKELIHOOD_NOTES = {
    True: "Exact: the model computes its likelihood exactly (e.g. FractalGen with every level autoregressive).",
    False: ("Estimate ({reason}): each value is a one-sample Monte-Carlo estimate of an upper bound on "
            "the negative log-likelihood (exact only for all-AR models; averaging runs tightens it)."),
    None: "Whether these values are exact or estimated was not reported by the model.",
}
"""The sentence under the likelihood table, by ``nll["exact"]``."""


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """The readable table: OA per feature against the reference and for the ceiling."""
    gen, ref, ceil = report["generated"], report["reference"], report["ceiling"]
    main, ceiling = report["metrics"], ceil["metrics"]
    lines = [
        "# FractalMIDI evaluation",
        "",
        f"- generated: `{gen['path']}` ({gen['pieces']} pieces, {len(gen['skipped'])} skipped)",
        f"- reference: `{ref['path']}` ({ref['kind']}, {ref['pieces']} pieces, {len(ref['skipped'])} skipped)",
        f"- ceiling: {ceil['kind']} of the reference ({ceil['pieces'][0]} vs {ceil['pieces'][1]} pieces)",
        *_skipped_lines(gen, "generated"),
        *_skipped_lines(ref, "reference"),
        "",
        "| feature | OA generated | OA ceiling | generated mean | reference mean |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in SCALAR_FEATURES:
        lines.append(
            f"| {name} | {_fmt(main['oa'][name])} | {_fmt(ceiling['oa'][name])} "
            f"| {_fmt(report['means']['generated'][name])} | {_fmt(report['means']['reference'][name])} |"
        )
    for name in HISTOGRAM_FEATURES:
        key = f"{name}_histogram"
        lines.append(f"| {key} | {_fmt(main['oa'][key])} | {_fmt(ceiling['oa'][key])} | | |")
    lines += [
        f"| **mean OA** | **{_fmt(main['oa_mean'])}** | **{_fmt(ceiling['oa_mean'])}** | | |",
        f"| **Frechet distance** | **{_fmt(main['frechet'])}** | **{_fmt(ceiling['frechet'])}** | | |",
        "",
    ]
    nll = report.get("nll")
    if nll is not None:
        lines.append("## Likelihood")
        lines.append("")
        if "note" in nll:
            lines.append(nll["note"])
        else:
            tag = _likelihood_tag(nll)
            lines += ["| set | pieces | bits per pixel | nats per step |", "|---|---:|---:|---:|"]
            for name in ("reference", "generated"):
                row = nll[name]
                lines.append(f"| {name} | {row['pieces']} | {_fmt(row['bits_per_pixel'], 4)}{tag} | "
                             f"{_fmt(row['nats_per_step'], 2)}{tag} |")
            lines += ["", LIKELIHOOD_NOTES[nll.get("exact")].format(reason=nll.get("estimate_reason"))]
        lines.append("")
    lines += ["## Method", "", report["method"]["oa"], "", report["method"]["frechet"], ""]
    return "\n".join(lines)


def _likelihood_tag(nll: dict) -> str:
    """`` (exact)`` or `` (estimate: MAR levels)`` after each value; nothing when not reported."""
    if nll.get("exact") is False:
        return f" (estimate: {nll.get('estimate_reason')})"
    return " (exact)" if nll.get("exact") else ""


def _skipped_lines(summary: dict, name: str) -> list[str]:
    """``- generated skipped: 2 x no notes`` (reasons counted), or nothing."""
    from collections import Counter

    counts = Counter(item["reason"] for item in summary["skipped"])
    if not counts:
        return []
    return [f"- {name} skipped: " + "; ".join(f"{n} x {reason}" for reason, n in counts.most_common())]


def plot_distributions(sets: list[FeatureSet], out_dir: Path) -> list[str]:
    """One PNG of KDE curves (scalar features) and one of mean histograms; returns their names."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, faster import

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(SCALAR_FEATURES)
    rows = -(-len(names) // PLOT_COLUMNS)
    fig = Figure(figsize=(4 * PLOT_COLUMNS, 2.8 * rows))
    axes = fig.subplots(rows, PLOT_COLUMNS)
    for k, (name, ax) in enumerate(zip(names, axes.flat)):
        columns = [s.scalars[:, k] for s in sets if len(s)]
        pooled = np.concatenate(columns) if columns else np.zeros(0)
        if pooled.size and pooled.std() > 0:
            floor = BANDWIDTH_FLOOR * pooled.std()
            widths = {id(s): bandwidth(s.scalars[:, k], floor) for s in sets if len(s)}
            margin = 3 * max(widths.values())
            grid = np.linspace(pooled.min() - margin, pooled.max() + margin, PLOT_GRID_POINTS)
            for s, (color, style) in zip(sets, SET_STYLES):
                if len(s):
                    ax.plot(grid, kde_density(s.scalars[:, k], grid, widths[id(s)]), color=color, linestyle=style,
                            label=s.name)
        elif pooled.size:
            ax.axvline(pooled[0], color="k", label="all pieces")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.subplots_adjust(**SUBPLOT_SPACING)
    fig.savefig(out_dir / SCALAR_PLOT, dpi=PLOT_DPI)

    hist_names = list(HISTOGRAM_FEATURES)
    cols = 3
    fig = Figure(figsize=(5 * cols, 5.6))
    axes = fig.subplots(-(-len(hist_names) // cols), cols)
    for name, ax in zip(hist_names, axes.flat):
        first, width, xlabel = HISTOGRAM_AXES[name]
        for s, (color, style) in zip(sets, SET_STYLES):
            if len(s):
                mean = s.histograms[name].mean(axis=0)
                ax.step(first + width * np.arange(mean.size), mean, where="mid", color=color, linestyle=style,
                        label=s.name)
        ax.set_title(f"{name} (mean normalised histogram)", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.subplots_adjust(**SUBPLOT_SPACING)
    fig.savefig(out_dir / HISTOGRAM_PLOT, dpi=PLOT_DPI)
    return [f"{PLOT_DIR}/{SCALAR_PLOT}", f"{PLOT_DIR}/{HISTOGRAM_PLOT}"]
