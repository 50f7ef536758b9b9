"""JSB chorales benchmark: exact test NLL (nats per frame) beside the published figures.

Protocol (Boulanger-Lewandowski et al. 2012): quarter-note frames, 88 binary keys, the standard
229/76/77 split, every one of the 4,725 test frames counted once (see fractalmidi.evaluate.jsb). A model
that trained on transpositions (data.pitch_shift) is scored, selected and reported as the equal frame-by-frame
mixture of itself read in each of them, an exact likelihood too; --one-pass scores it read once.

    # train within a wall-clock budget (project train code), keep the best checkpoint by exact
    # validation NLL, score the test split, print the table and append it to RESULTS.md
    python benchmarks/bench_jsb.py --minutes 55 --out runs/bench_jsb
    # the same selection and scoring for a run trained with `fractalmidi train configs/fractal_jsb.yaml`
    python benchmarks/bench_jsb.py --from-run RUN_DIR --train-command "fractalmidi train ..."
    # re-score a checkpoint (a file, a run folder or a shipped model name such as jsb-quarter)
    python benchmarks/bench_jsb.py --eval-only --checkpoint jsb-quarter
    # the per-key unigram and first-order Markov baselines (11.061 and ~10.47)
    python benchmarks/bench_jsb.py --baselines

Data: ``--data DIR`` (made by ``fractalmidi prepare SRC --layout jsb-quarter``), else the quarter
file under $FRACTALMIDI_DATA/jsb_chorales is prepared into a temporary folder (well under a second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CONFIG = REPO / "configs" / "fractal_jsb.yaml"
DEFAULT_MINUTES = 55.0
STRIDE_DIVISOR = 2
"""Default scoring stride: half the window, so every scored frame after the first window has at
least half a window of context."""


def _prepare(folder: Path) -> Path:
    from fractalmidi.cli import main
    from fractalmidi.settings import shared_data_dir

    out = folder / "jsb-quarter"
    if not (out / "manifest.json").is_file():
        src = shared_data_dir() / "jsb_chorales"
        code = main(["prepare", str(src), "--layout", "jsb-quarter", "--out", str(out), "--workers", "0"])
        if code != 0:
            raise SystemExit(f"could not prepare {src} (set FRACTALMIDI_DATA to the folder holding jsb_chorales/)")
    return out


def _data(args: argparse.Namespace, scratch: Path):
    from fractalmidi.data.cache import PreparedData

    data = PreparedData(Path(args.data) if args.data else _prepare(scratch))
    layout = data.manifest.get("settings", {}).get("layout")
    if layout != "jsb-quarter":
        raise SystemExit(f"{data.root} was prepared with --layout {layout}, not jsb-quarter")
    return data


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), load {load}"


def baseline_rows(data) -> list[tuple[str, float]]:
    from fractalmidi.evaluate import jsb

    train, test = jsb.keyboard_frames(data, "train"), jsb.keyboard_frames(data, "test")
    return [("per-key unigram (add-one, train split)", jsb.unigram_nll(train, test)),
            ("per-key first-order Markov (add-one, train split)", jsb.markov_nll(train, test))]


def score(model, data, split: str, window: int, stride: int, shifts: tuple[int, ...] = (0,)) -> dict[str, Any]:
    from tqdm import tqdm

    from fractalmidi.evaluate import jsb

    rolls = jsb.split_rolls(data, split)
    windows = len(jsb.plan_windows([r.shape[-1] for r in rolls], window, stride)) * len(shifts)
    with tqdm(total=windows, desc=f"nll {split}", unit="window", leave=False, disable=None) as bar:
        return jsb.model_nll(model, rolls, window=window, stride=stride, shifts=shifts, progress=bar.update)


def training_shifts(config: dict) -> tuple[int, ...]:
    """The transpositions a model trained on (``data.pitch_shift``): the components of its mixture."""
    low, high = config["data"].get("pitch_shift") or (0, 0)
    return tuple(range(int(low), int(high) + 1))


def scored_shifts(config: dict, one_pass: bool) -> tuple[int, ...]:
    """What a model is scored as: the equal frame-by-frame mixture over its training transpositions, or with
    ``one_pass`` (or none to mix) the model read once."""
    return (0,) if one_pass else training_shifts(config)


def scores(model, config: dict, data, window: int, stride: int,
           one_pass: bool) -> tuple[dict[str, Any], list[tuple[str, float]], list[str]]:
    """The one-pass test result, the table rows and the result lines, the reported figure last: the model read
    once and, unless ``one_pass``, the equal frame-by-frame mixture over its training transpositions."""
    result = score(model, data, "test", window, stride)
    ours = [(f"FractalGen {model.preset}, read once", result["nats_per_frame"])]
    shifts = scored_shifts(config, one_pass)
    if len(shifts) == 1:
        return result, ours, [f"test_nll_nats_per_frame={result['nats_per_frame']:.4f} frames={result['frames']}"]
    mixed = score(model, data, "test", window, stride, shifts)
    span = f"{shifts[0]:+d}..{shifts[-1]:+d}"
    ours.append((f"FractalGen {model.preset}: equal mixture of itself in its {len(shifts)} training transpositions "
                 f"({span} semitones), frame by frame", mixed["nats_per_frame"]))
    lines = [f"test_nll_nats_per_frame_one_pass={result['nats_per_frame']:.4f} frames={result['frames']}",
             f"the model scored: the equal frame-by-frame mixture of its {len(shifts)} training transpositions "
             f"({span}; --one-pass: read once)",
             f"test_nll_nats_per_frame={mixed['nats_per_frame']:.4f} frames={mixed['frames']}"]
    return result, ours, lines


def _window(config: dict, args: argparse.Namespace) -> tuple[int, int]:
    window = args.window or int(config["data"]["crop_length"])
    return window, args.stride or max(1, window // STRIDE_DIVISOR)


def _load(path: Path):
    from fractalmidi.inference import load_checkpoint

    loaded = load_checkpoint(path)
    return loaded.model, loaded.config


def select_best(run_dir: Path, data, args: argparse.Namespace) -> tuple[Path, list[tuple[Path, int, float]]]:
    """Exact validation NLL of every saved checkpoint of a run (EMA weights where kept); the lowest wins.
    Each checkpoint is scored as the model the table reports (the transposition mixture unless ``--one-pass``),
    so the selection and the test figure measure the same model."""
    import torch

    from fractalmidi.train.checkpoint import CHECKPOINT_DIR

    candidates = sorted((run_dir / CHECKPOINT_DIR).glob("*.ckpt"))
    if not candidates:
        raise SystemExit(f"{run_dir} holds no checkpoints")
    seen: dict[int, Path] = {}
    for path in candidates:  # last.ckpt repeats the final periodic one when training ended on it
        step = int(torch.load(path, mmap=True, weights_only=True, map_location="cpu")["global_step"])
        seen.setdefault(step, path)
    table = []
    for step, path in sorted(seen.items()):
        model, config = _load(path)
        window, stride = _window(config, args)
        nll = score(model, data, "valid", window, stride, scored_shifts(config, args.one_pass))["nats_per_frame"]
        print(f"  step {step:6d}  valid {nll:.4f} nats/frame  ({path.name})", flush=True)
        table.append((path, step, nll))
    best = min(table, key=lambda row: row[2])
    return best[0], table


def table_text(rows: list[tuple[str, str]], ours: list[tuple[str, float]], baselines: list[tuple[str, float]]) -> str:
    from fractalmidi.evaluate import jsb

    lines = ["| model | test NLL (nats/frame) |", "|---|---:|"]
    entries = [(name, value, "") for name, value in jsb.PUBLISHED]
    entries += [(name, value, "") for name, value in baselines]
    entries += [(f"**{name}**", value, "**") for name, value in ours]
    for name, value, bold in sorted(entries, key=lambda e: -e[1]):
        lines.append(f"| {name} | {bold}{value:.3f}{bold} |")
    lines.append("")
    lines += [f"{key}: {value}" for key, value in rows]
    return "\n".join(lines)


def append_results(title: str, body: str) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(RESULTS, "a") as handle:
        handle.write(f"\n## jsb: exact NLL on the JSB chorales benchmark, {title} ({stamp})\n\n{body}\n")


def model_rows(model, result: dict[str, Any], window: int, stride: int) -> list[tuple[str, str]]:
    from fractalmidi.evaluate import jsb

    rows = result["rows"]
    scope = f"{len(rows)} rows scored (MIDI {rows.start}-{rows.stop - 1})"
    if len(rows) > jsb.NUM_KEYS:
        scope += (f": the {len(rows) - jsb.NUM_KEYS} always-silent rows beyond the 88 keys too, so this is an upper "
                  f"bound on the 88-key NLL")
    return [("scored", f"{result['frames']} test frames (padding never scored), {scope}"),
            ("likelihood", "exact (all-AR levels)" if result["exact"] else "NOT exact (MAR levels: an estimate)"),
            ("windows", f"{window} frames, stride {stride} ({result['windows']} windows)"),
            ("model", f"{model.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters)")]


def run_train(args: argparse.Namespace, out: Path) -> tuple[Path, str, float]:
    from fractalmidi.train.runner import plan, train

    data_root = Path(args.data) if args.data else _prepare(out)
    run_dir = out / "run"
    overrides = [f"data.root={data_root}", f"logging.output_dir={run_dir}", f"training.max_minutes={args.minutes}",
                 "logging.progress_bar=false", *args.set]
    command = f"fractalmidi train {args.config} " + " ".join(overrides)
    started = time.perf_counter()
    train(plan(str(args.config), overrides, overwrite=args.overwrite))
    return run_dir, command, time.perf_counter() - started


def run_wall_minutes(run_dir: Path) -> float:
    """A finished run's training time: with a clock budget the trainer's clock as last.ckpt saved it (resumes
    included), else from the config's writing at the start to last.ckpt's at the end."""
    from fractalmidi.train.checkpoint import CHECKPOINT_DIR, LAST_NAME, safe_load
    from fractalmidi.train.runner import CONFIG_NAME

    last = run_dir / CHECKPOINT_DIR / LAST_NAME
    timer = safe_load(last).get("callbacks", {}).get("Timer")
    if timer:
        return sum(timer["time_elapsed"].values()) / 60
    return (last.stat().st_mtime - (run_dir / CONFIG_NAME).stat().st_mtime) / 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data",
                        help="prepared jsb-quarter folder (default: prepare the shared file to a temp folder)")
    parser.add_argument("--out", default="runs/bench_jsb", help="training output folder (default runs/bench_jsb)")
    parser.add_argument("--config", default=str(CONFIG), help="training config (default configs/fractal_jsb.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="training wall-clock budget")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier training run in --out")
    parser.add_argument("--from-run", metavar="RUN_DIR", help="select and score a finished run instead of training")
    parser.add_argument("--train-command", default="",
                        help="with --from-run: the command that trained it (for RESULTS.md)")
    parser.add_argument("--eval-only", action="store_true", help="only score --checkpoint on the test split")
    parser.add_argument("--checkpoint", help="checkpoint file, run folder or shipped model name (e.g. jsb-quarter)")
    parser.add_argument("--baselines", action="store_true", help="print the unigram and Markov baseline rows")
    parser.add_argument("--window", type=int, help="scoring window in frames (default: the model's training crop)")
    parser.add_argument("--stride", type=int, help="scoring stride (default: half the window)")
    parser.add_argument("--export", metavar="CKPT",
                        help="also write the selected model as a slim inference checkpoint (fractalmidi export; "
                             "ship it as src/fractalmidi/pretrained/jsb-quarter.ckpt with a model card)")
    parser.add_argument("--one-pass", action="store_true",
                        help="score each model read once; default: as the equal mixture, frame by frame, of itself "
                             "read in each transposition it trained on (still an exact likelihood; one pass per "
                             "transposition)")
    parser.add_argument("--no-append", action="store_true", help="do not append the table to RESULTS.md")
    args = parser.parse_args(argv)

    from fractalmidi.errors import UserError

    try:
        with tempfile.TemporaryDirectory(prefix="bench_jsb_") as scratch:
            return _run(args, Path(scratch))
    except UserError as err:
        print(f"bench_jsb: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, scratch: Path) -> int:
    from fractalmidi.evaluate import jsb

    data = _data(args, scratch) if (args.data or args.eval_only or args.baselines or args.from_run) else None
    baselines: list[tuple[str, float]] = []
    if args.baselines:
        baselines = baseline_rows(data)
        print(table_text([("test frames", str(jsb.count_frames(jsb.keyboard_frames(data, "test"))))], [], baselines))
        if not args.eval_only:
            return 0
    if args.eval_only:
        if not args.checkpoint:
            raise SystemExit("--eval-only needs --checkpoint CKPT_OR_NAME")
        from fractalmidi.pretrained import resolve

        model, config = _load(resolve(args.checkpoint))
        window, stride = _window(config, args)
        result, ours, lines = scores(model, config, data, window, stride, args.one_pass)
        rows = [("checkpoint", args.checkpoint), *model_rows(model, result, window, stride), ("machine", _machine())]
        print(table_text(rows, ours, baselines))
        print("\n".join(lines))
        return 0

    out = Path(args.out)
    if args.from_run:
        run_dir, command = Path(args.from_run), args.train_command or "(not given)"
        minutes = run_wall_minutes(run_dir)
    else:
        run_dir, command, seconds = run_train(args, out)
        minutes = seconds / 60
        data = _data(argparse.Namespace(data=str(Path(args.data) if args.data else out / "jsb-quarter")), scratch)
    from fractalmidi.train.config import load_yaml
    from fractalmidi.train.runner import CONFIG_NAME

    mixed = len(scored_shifts(load_yaml(run_dir / CONFIG_NAME), args.one_pass)) > 1
    measure = "exact validation NLL" + (" of the transposition mixture" if mixed else "")
    print(f"{measure} per checkpoint (EMA weights where the run kept them):", flush=True)
    best, table = select_best(run_dir, data, args)
    model, config = _load(best)
    window, stride = _window(config, args)
    result, ours, lines = scores(model, config, data, window, stride, args.one_pass)
    step = next(s for p, s, _ in table if p == best)
    valid = min(v for _, _, v in table)
    if args.export:
        from fractalmidi.train.export import export_generator

        size = export_generator(best, Path(args.export))
        print(f"exported step {step} to {args.export} ({size / 2**20:.2f} MiB)")
    rows = [("training command", f"`{command}`"), ("training wall time", f"{minutes:.1f} min"),
            ("selected", f"step {step} of {max(s for _, s, _ in table)} by {measure} {valid:.4f} "
                         f"({', '.join(f'{s}: {v:.3f}' for _, s, v in table)})"),
            *model_rows(model, result, window, stride), ("machine", _machine()),
            ("command", "`python benchmarks/bench_jsb.py " + " ".join(sys.argv[1:]) + "`")]
    baselines = baselines or baseline_rows(data)
    text = table_text(rows, ours, baselines)
    print(text)
    if not args.no_append:
        append_results(f"{model.preset}, {minutes:.0f}-minute training", text)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
