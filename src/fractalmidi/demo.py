"""``fractalmidi demo``: the whole loop on the Bach chorales bundled with music21, on a CPU.

prepare -> train the tiny FractalGen preset for a bounded time -> compose, continue and
inpaint a held-out chorale -> evaluate against the test split -> a summary table. It calls
the library functions behind the real commands, so it exercises exactly what users run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalmidi.data.prepare import PARTIAL_SUFFIX
from fractalmidi.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_CONFIG = REPO_ROOT / "configs" / "fractal_tiny.yaml"
DEFAULT_OUT = Path("demo_out")
DEFAULT_MINUTES = 6.0
"""Training budget; preparing, generating and evaluating take about 3-4 more minutes on 2 cores."""
MARKER = "demo.json"
"""The demo's record: what ran, how long each stage took."""
DEMO_ENTRIES = ("data", f"data{PARTIAL_SUFFIX}", "run", "unconditional", "input", "continue", "inpaint", "report", MARKER)
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
    notes: list[str] = field(default_factory=list)


def claim_out_dir(out: Path, overwrite: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    """Empty ``out`` for a new demo: a previous demo is replaced; another non-empty folder only with
    ``overwrite`` and only if fractalmidi made it (see :mod:`fractalmidi.outdir`); never an input."""
    from fractalmidi.outdir import check_not_input, check_replaceable, read_marker, write_marker

    check_not_input(out, inputs)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        previous = (read_marker(out) or {}).get("command") == "demo"
        if not previous and not overwrite:
            raise UserError(f"--out {out} is not empty and holds no previous demo; pass --overwrite to replace a "
                            f"folder fractalmidi made, or choose another folder")
        check_replaceable(out)
        for entry in out.iterdir():  # the folder itself stays (it may be the current one)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "demo", DEMO_ENTRIES)  # now, so that an interrupted demo is still replaceable


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

    if not TRAIN_CONFIG.is_file():
        raise UserError(f"the demo needs {TRAIN_CONFIG} (run it from a source checkout)")
    budget = ([f"training.max_minutes={minutes}", f"training.max_steps={UNBOUNDED_STEPS}"] if minutes > 0
              else [f"training.max_steps={MIN_TRAIN_STEPS}"])
    result = train(plan(str(TRAIN_CONFIG), [f"data.root={data}", f"training.seed={seed}", *budget,
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


def _generate(checkpoint: Path, out: Path, mode: str, seed: int, **fields: Any) -> dict:
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
    from fractalmidi.evaluate import evaluate

    if minutes < 0:
        raise UserError(f"--minutes must be >= 0, got {minutes}")
    if num_samples < 2:
        raise UserError(f"--num-samples must be at least 2 (a set to evaluate), got {num_samples}")
    if data is not None and not (data / "manifest.json").is_file():
        raise UserError(f"--data {data} is not a prepared data folder (no manifest.json)")
    claim_out_dir(out, overwrite, (data,))
    result = DemoResult(out=out)
    clock = time.perf_counter()

    def stage(name: str, output: Path | str, detail: str = "") -> None:
        nonlocal clock
        now = time.perf_counter()
        result.stages.append(Stage(name, now - clock, str(output), detail))
        clock = now

    if data is None:
        data = _prepare(out)
        stage("prepare", data, "Bach chorales from music21")
    else:
        stage("data", data, "given with --data")
    manifest = json.loads((data / "manifest.json").read_text())

    checkpoint, steps = _train(data, out / "run", minutes, seed)
    stage("train", checkpoint, f"{steps} steps of fractal_tiny")

    composed = out / "unconditional"
    _generate(checkpoint, composed, "unconditional", seed, length=length, num_samples=num_samples, tempo_bpm=100.0)
    stage("compose", composed, f"{num_samples} x {length} steps")

    inputs = out / "input"
    inputs.mkdir()
    chorale, chorale_steps = _held_out_chorale(data, inputs, length)
    cont = out / "continue"
    condition = min(length, chorale_steps)
    _generate(checkpoint, cont, "continue", seed, input=chorale, condition_length=condition, length=length)
    stage("continue", cont, f"{chorale.name}: {condition} steps kept + {length} new")

    inpaint = out / "inpaint"
    span = min(length, chorale_steps)
    start, end = span // 4, span - span // 4  # the middle half of the opening
    _generate(checkpoint, inpaint, "inpaint", seed, input=chorale, start=start, end=max(end, start + 1))
    stage("inpaint", inpaint, f"{chorale.name}: steps {start}..{end} rewritten")

    wavs = _render_wavs([composed, cont, inpaint], result.notes)
    if wavs:
        stage("render", out, f"{wavs} WAV files (FluidSynth)")

    report_dir = out / "report"
    result.report = evaluate(composed, data, report_dir, checkpoint=checkpoint, nll_steps=EVAL_NLL_STEPS,
                             max_pieces=EVAL_MAX_PIECES, progress=False)
    stage("evaluate", report_dir / "report.md", "composed pieces vs the test split")

    record = {
        "minutes": minutes,
        "data": str(data),
        "data_splits": manifest.get("splits"),
        "train_steps": steps,
        "stages": [vars(s) for s in result.stages],
        "total_seconds": sum(s.seconds for s in result.stages),
        "notes": result.notes,
    }
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return result


def summary(result: DemoResult) -> str:
    """The table printed at the end: what each stage made, where, and how long it took."""
    rows = [(s.name, f"{s.seconds:6.1f} s", s.output, s.detail) for s in result.stages]
    rows.append(("total", f"{sum(s.seconds for s in result.stages):6.1f} s", str(result.out), ""))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    metrics = result.report.get("metrics", {})
    ceiling = result.report.get("ceiling", {}).get("metrics", {})
    lines.append("")
    lines.append(f"evaluation (composed vs test split; ceiling = train vs test): mean OA {_num(metrics.get('oa_mean'))} "
                 f"(ceiling {_num(ceiling.get('oa_mean'))}), Frechet {_num(metrics.get('frechet'))} "
                 f"(ceiling {_num(ceiling.get('frechet'))})")
    nll = result.report.get("nll", {}).get("reference")
    if nll and nll.get("bits_per_pixel") is not None:
        exact = result.report["nll"].get("exact")
        kind = "exact" if exact else f"estimate: {result.report['nll'].get('estimate_reason', 'not exact')}"
        lines.append(f"test-split likelihood: {nll['bits_per_pixel']:.4f} bits/pixel, "
                     f"{nll['nats_per_step']:.2f} nats/step ({kind})")
    lines += result.notes
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
