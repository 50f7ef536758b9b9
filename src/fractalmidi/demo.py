"""``fractalmidi demo``: music in the first minute, then the whole train-your-own loop, on a CPU.

1. The shipped ``bach`` model composes, continues and inpaints a chorale it never trained on.
2. Your own model: prepare the Bach chorales bundled with music21 (or ``--data``) -> train the
   tiny FractalGen preset for a bounded time -> compose, continue and inpaint a held-out piece.
3. Both sets of composed pieces are evaluated against the test split, side by side.

It calls the library functions behind the real commands, so it exercises exactly what users run,
and needs nothing outside the installed package (the config presets ship inside it).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalmidi.data.prepare import PARTIAL_SUFFIX
from fractalmidi.errors import UserError
from fractalmidi.outdir import MANIFEST_FILE, claim_dir, write_json

TRAIN_CONFIG = "fractal_tiny"
"""The config preset the demo trains (``src/fractalmidi/configs/fractal_tiny.yaml``)."""
SHIPPED_MODEL = "bach"
SHIPPED_INPUT = "bwv1.6.mxl"
"""A music21 chorale in the shipped ``bach`` model's test split: the piece it continues and inpaints."""
SHIPPED_DIR = "shipped"
DEFAULT_OUT = Path("demo_out")
DEFAULT_MINUTES = 6.0
"""Training budget; the shipped model's part, preparing, generating and evaluating take about 2-3 more
minutes on 2 cores."""
MARKER = "demo.json"
"""The demo's record: what ran, how long each stage took."""
DEMO_ENTRIES = (SHIPPED_DIR, "data", f"data{PARTIAL_SUFFIX}", "run", "unconditional", "input", "continue", "inpaint",
                "report", MARKER)
"""What a demo writes into ``--out`` (listed in its fractalmidi marker)."""

MIN_TRAIN_STEPS = 5
"""With ``--minutes 0`` the demo trains only this many steps (it shows the loop, not the music)."""
UNBOUNDED_STEPS = 1_000_000
"""With a time budget the clock ends training, not a step count."""
TRAIN_OVERRIDES = (
    "training.limit_val_batches=0",  # validation pauses would eat the small budget
    "logging.log_images_every_n_steps=0",  # sampling previews would eat the small budget
    "logging.checkpoint_every_n_steps=1000000",  # last.ckpt is written at every stop anyway
)
EVAL_NLL_STEPS = 64
EVAL_MAX_PIECES = 40
"""Bach has 38 test chorales; bounds the NLL time on bigger ``--data``."""

SAMPLING_THREADS = 1
"""Torch threads while generating and scoring: a small model's sampling is thousands of tiny steps, which a
second thread barely speeds up on an idle machine and slows many times over (40x measured) when another job
holds a core."""

UNCONDITIONAL_LENGTH = 128
"""Steps of each composed piece, of the kept opening and of the continuation (8 bars of 16ths)."""
NUM_UNCONDITIONAL = 4


@dataclass
class Stage:
    name: str
    seconds: float
    output: str
    detail: str = ""


@dataclass
class DemoResult:
    out: Path
    stages: list[Stage] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    """Your model's pieces against the test split."""
    shipped_report: dict[str, Any] = field(default_factory=dict)
    """The shipped model's pieces against the same test split."""
    notes: list[str] = field(default_factory=list)


def _prepare(out: Path) -> Path:
    from fractalmidi.data.prepare import PrepareRequest, prepare

    data = out / "data"
    print(prepare(PrepareRequest(out=data, dataset="bach")).summary())
    return data


def _train(data: Path, run_dir: Path, minutes: float, seed: int) -> tuple[Path, int]:
    """Train fractal_tiny until the clock says ``minutes`` (``training.max_minutes``: the run stops at
    the clock and its learning-rate schedule is fitted to the budget); ``minutes`` 0 trains
    :data:`MIN_TRAIN_STEPS` steps."""
    from fractalmidi.train.checkpoint import CHECKPOINT_DIR, LAST_NAME
    from fractalmidi.train.runner import plan, train

    budget = ([f"training.max_minutes={minutes}", f"training.max_steps={UNBOUNDED_STEPS}"] if minutes > 0
              else [f"training.max_steps={MIN_TRAIN_STEPS}"])
    result = train(plan(TRAIN_CONFIG, [f"data.root={data}", f"training.seed={seed}", *budget,
                                            f"logging.output_dir={run_dir}", *TRAIN_OVERRIDES]))
    return run_dir / CHECKPOINT_DIR / LAST_NAME, result.global_step


def _held_out_chorale(data: Path, folder: Path, min_steps: int) -> tuple[Path, int]:
    """The first test-split chorale of at least ``min_steps`` (else the longest), as MIDI."""
    from fractalmidi.data import PreparedData, roll_to_midi

    prepared = PreparedData(data)
    test = prepared.split("test")
    if not test:
        raise UserError(f"prepared data {data} has no test split")
    index = next((i for i in test if prepared.steps(i) >= min_steps), max(test, key=prepared.steps))
    info = prepared.info(index)
    name = Path(str(info.get("path") or index)).stem
    path = folder / f"heldout_{name}.mid"
    roll_to_midi(prepared.piece(index), path, grid=prepared.grid, tempo_bpm=float(info.get("tempo_bpm") or 100.0))
    return path, prepared.steps(index)


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _shipped_input(folder: Path) -> tuple[Path, int]:
    """:data:`SHIPPED_INPUT` from music21's corpus, as MIDI on the 16th grid."""
    from fractalmidi.data import roll_to_midi
    from fractalmidi.data.roll import midi_to_roll
    from fractalmidi.data.sources import bach_chorale_paths, corpus_score

    path = next((p for p in bach_chorale_paths() if p.name == SHIPPED_INPUT), None)
    if path is None:
        raise UserError(f"music21's corpus has no {SHIPPED_INPUT}: reinstall music21")
    roll, meta = midi_to_roll(corpus_score(path), grid="16th")
    out = folder / f"heldout_{Path(SHIPPED_INPUT).stem}.mid"
    roll_to_midi(roll, out, grid="16th", tempo_bpm=float(meta.get("tempo_bpm") or 100.0))
    return out, int(roll.shape[-1])


def _three_modes(checkpoint: Path | str, folder: Path, piece: tuple[Path, int], length: int, num_samples: int,
                 seed: int) -> dict[str, str]:
    """Compose ``num_samples`` pieces, continue ``piece`` and rewrite the middle of its opening, into
    ``folder``/unconditional, continue and inpaint; returns each mode's one-line detail."""
    path, steps = piece
    _generate(checkpoint, folder / "unconditional", "unconditional", seed, length=length, num_samples=num_samples,
              tempo_bpm=100.0)
    condition = min(length, steps)
    _generate(checkpoint, folder / "continue", "continue", seed, input=path, condition_length=condition, length=length)
    span = min(length, steps)
    start, end = span // 4, span - span // 4  # the middle half of the opening
    _generate(checkpoint, folder / "inpaint", "inpaint", seed, input=path, start=start, end=max(end, start + 1))
    return {"compose": f"{num_samples} x {length} steps",
            "continue": f"{path.name}: {condition} steps kept + {length} new",
            "inpaint": f"{path.name}: steps {start}..{end} rewritten"}


def _generate(checkpoint: Path | str, out: Path, mode: str, seed: int, **fields: Any) -> dict:
    from fractalmidi.generate import BUILTIN_DEFAULTS, Request, generate

    request = Request(
        checkpoint=checkpoint, out=out, config_file=None, mode=mode, num_samples=fields.pop("num_samples", 1),
        batch_size=int(BUILTIN_DEFAULTS["batch_size"]), seed=seed, tempo_bpm=fields.pop("tempo_bpm", None),
        device="cpu", gif=True, wav=False, sampling={}, **fields,
    )
    return generate(request, progress=False)


def _render_wavs(folders: list[Path], notes: list[str]) -> int:
    """WAV of every sample when FluidSynth is installed; otherwise one note saying how to get it."""
    from fractalmidi.viz import render_wav

    count = 0
    for folder in folders:
        for mid in sorted(folder.glob("sample_*.mid")):
            try:
                render_wav(mid, mid.with_suffix(".wav"))
            except UserError as err:
                notes.append(f"WAV skipped: {err}")
                return count
            count += 1
    return count


def run_demo(out: Path, minutes: float, *, data: Path | None = None, length: int = UNCONDITIONAL_LENGTH,
             num_samples: int = NUM_UNCONDITIONAL, seed: int = 0, overwrite: bool = False) -> DemoResult:
    """The whole loop; returns the stages with their wall times and the evaluation report."""
    from fractalmidi.evaluate import REPORT_MD, evaluate

    if minutes < 0:
        raise UserError(f"--minutes must be >= 0, got {minutes}")
    if num_samples < 2:
        raise UserError(f"--num-samples must be at least 2 (a set to evaluate), got {num_samples}")
    if data is not None and not (data / MANIFEST_FILE).is_file():
        raise UserError(f"--data {data} is not a prepared data folder (no {MANIFEST_FILE})")
    claim_dir(out, overwrite, command="demo", entries=DEMO_ENTRIES, inputs=(data,))
    result = DemoResult(out=out)
    clock = time.perf_counter()

    def stage(name: str, output: Path | str, detail: str = "") -> None:
        nonlocal clock
        now = time.perf_counter()
        result.stages.append(Stage(name, now - clock, str(output), detail))
        clock = now

    from fractalmidi.pretrained import resolve

    shipped = out / SHIPPED_DIR
    inputs = out / "input"
    inputs.mkdir()
    with _torch_threads(SAMPLING_THREADS):
        details = _three_modes(SHIPPED_MODEL, shipped, _shipped_input(inputs), length, num_samples, seed)
    stage("shipped", shipped, f"the shipped '{SHIPPED_MODEL}' model: {details['compose']}, continue + inpaint "
          f"{SHIPPED_INPUT}")

    if data is None:
        data = _prepare(out)
        stage("prepare", data, "Bach chorales from music21")
    else:
        stage("data", data, "given with --data")
    manifest = json.loads((data / MANIFEST_FILE).read_text())

    checkpoint, steps = _train(data, out / "run", minutes, seed)
    stage("train", checkpoint, f"{steps} steps of fractal_tiny")

    with _torch_threads(SAMPLING_THREADS):
        details = _three_modes(checkpoint, out, _held_out_chorale(data, inputs, length), length, num_samples, seed)
    stage("generate", out, "; ".join(details.values()))

    wavs = _render_wavs([shipped / "unconditional", out / "unconditional", out / "continue", out / "inpaint"],
                        result.notes)
    if wavs:
        stage("render", out, f"{wavs} WAV files (FluidSynth)")

    report_dir = out / "report"
    scoring = {"nll_steps": EVAL_NLL_STEPS, "max_pieces": EVAL_MAX_PIECES, "progress": False}
    with _torch_threads(SAMPLING_THREADS):
        result.report = evaluate(out / "unconditional", data, report_dir, checkpoint=checkpoint, **scoring)
        result.shipped_report = evaluate(shipped / "unconditional", data, shipped / "report",
                                         checkpoint=resolve(SHIPPED_MODEL), **scoring)
    stage("evaluate", report_dir / REPORT_MD, "both models' composed pieces vs the test split")

    record = {
        "minutes": minutes,
        "shipped_model": SHIPPED_MODEL,
        "data": str(data),
        "data_splits": manifest.get("splits"),
        "train_steps": steps,
        "stages": [vars(s) for s in result.stages],
        "total_seconds": sum(s.seconds for s in result.stages),
        "notes": result.notes,
    }
    write_json(out / MARKER, record)
    return result


def summary(result: DemoResult) -> str:
    """The table printed at the end: what each stage made, where, and how long it took."""
    rows = [(s.name, f"{s.seconds:6.1f} s", s.output, s.detail) for s in result.stages]
    rows.append(("total", f"{sum(s.seconds for s in result.stages):6.1f} s", str(result.out), ""))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.append("")
    lines += _evaluation_table(result)
    lines += result.notes
    return "\n".join(lines)


def _evaluation_table(result: DemoResult) -> list[str]:
    """Both models' composed pieces against the test split, side by side, with the train-vs-test ceiling."""
    reports = {f"shipped '{SHIPPED_MODEL}'": result.shipped_report, "your model": result.report}

    def nll(report: dict) -> str:
        scored = report.get("nll", {}).get("reference") or {}
        if scored.get("nats_per_step") is None:
            return "n/a"
        kind = "exact" if report["nll"].get("exact") else "estimate"
        return f"{scored['nats_per_step']:.2f} ({kind})"

    rows = [("vs the test split", *reports, "ceiling (train vs test)"),
            ("mean OA (higher is better)", *(_num(r.get("metrics", {}).get("oa_mean")) for r in reports.values()),
             _num(result.report.get("ceiling", {}).get("metrics", {}).get("oa_mean"))),
            ("Frechet (lower is better)", *(_num(r.get("metrics", {}).get("frechet")) for r in reports.values()),
             _num(result.report.get("ceiling", {}).get("metrics", {}).get("frechet"))),
            ("NLL, nats/step (lower is better)", *(nll(r) for r in reports.values()), "")]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    return ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip() for row in rows]


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
