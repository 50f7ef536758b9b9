"""Music quality of the tiny presets: train each for a wall-clock budget, sample, compare with held-out music.

For every dataset (prepared once into ``--work``) and every config, this runs the user's own
commands: ``fractalmidi train CONFIG training.max_minutes=M``, ``fractalmidi generate`` (16
unconditional pieces of 256 steps) and ``fractalmidi evaluate`` against the test split, then
prints one table and appends it to ``benchmarks/RESULTS.md``: mean and per-feature OA, Frechet
distance (with the train-vs-test ceiling on sets of the same size), mean note length, share of
one-step notes, pitch classes per piece, velocity mean / std, and seconds per sample (``sample``
alone, one batch of 16, default options). The test
split's own row is printed first, as the target.

    python benchmarks/bench_quality.py                       # fractal_tiny + jit_tiny on bach, pop909, folk
    python benchmarks/bench_quality.py --minutes 2 --datasets bach --configs configs/fractal_tiny.yaml
    python benchmarks/bench_quality.py --datasets --folder mine=~/midi   # only a folder of your own
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fractalmidi.data.cache import PreparedData  # noqa: E402
from fractalmidi.data.grid import parse_grid  # noqa: E402
from fractalmidi.data.roll import NUM_PITCHES, ROLL_PLANES, roll_to_notes  # noqa: E402
from fractalmidi.evaluate.features import notes_from_midi  # noqa: E402
from fractalmidi.inference import load_checkpoint  # noqa: E402
from fractalmidi.settings import shared_data_dir  # noqa: E402

DATASETS = {
    "bach": ["--dataset", "bach"],
    "pop909": ["{shared}/pop909"],
    "folk": ["--dataset", "folk"],
}
"""How each dataset is prepared (``{shared}`` = FRACTALMIDI_DATA)."""
CONFIGS = ("configs/fractal_tiny.yaml", "configs/jit_tiny.yaml")
FEATURES_SHOWN = ("pitch_classes_used", "duration_mean", "ioi_mean", "polyphony_mean", "note_density",
                  "scale_consistency", "velocity_histogram", "duration_histogram", "pitch_class_histogram")
ENV = dict(os.environ)
"""Environment of the commands run (``--threads`` sets their thread count)."""
ONE_STEP_QUARTERS = 0.25
"""A 16th-grid step in quarter notes: notes this short are 'one-step notes'."""


def fractalmidi(*args: str, log: Path) -> None:
    """Run a fractalmidi command, its output to ``log``; a failure stops the benchmark with the log's tail."""
    with open(log, "a") as handle:
        handle.write(f"$ fractalmidi {' '.join(args)}\n")
        handle.flush()
        done = subprocess.run([sys.executable, "-m", "fractalmidi", *args], stdout=handle, stderr=subprocess.STDOUT,
                              env=ENV)
    if done.returncode:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"fractalmidi {args[0]} failed ({done.returncode}):\n" + "\n".join(tail))


def prepare(name: str, work: Path, log: Path, folders: dict[str, str]) -> Path:
    """The prepared data of a named dataset or of a ``--folder NAME=DIR`` (prepared once into ``work``)."""
    out = work / "data" / name
    if not (out / "manifest.json").is_file():
        args = [folders[name]] if name in folders else [a.format(shared=shared_data_dir()) for a in DATASETS[name]]
        fractalmidi("prepare", *args, "--out", str(out), log=log)
    return out


def folder_arg(text: str) -> tuple[str, str]:
    """``NAME=DIR`` of ``--folder``."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder or name in DATASETS:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, NAME not one of {', '.join(DATASETS)}; got {text!r}")
    return name, folder


def note_stats(durations: list[np.ndarray], velocities: list[np.ndarray], pitch_classes: list[int]) -> dict:
    """Mean note length (quarters), share of one-step notes, pitch classes per piece, velocity mean / std."""
    dur, vel = np.concatenate(durations), np.concatenate(velocities)
    return {"note_len": float(np.mean([d.mean() for d in durations])),
            "one_step": float(np.mean([np.mean(d <= ONE_STEP_QUARTERS + 1e-6) for d in durations])),
            "pcs": float(np.mean(pitch_classes)), "vel_mean": float(vel.mean()), "vel_std": float(vel.std()),
            "notes": int(dur.size)}


def test_split_stats(data_dir: Path) -> dict:
    data = PreparedData(data_dir)
    per_quarter = parse_grid(data.grid).steps_per_quarter
    durations, velocities, pcs = [], [], []
    for i in data.split("test"):
        notes = roll_to_notes(data.piece(i))
        if len(notes):
            durations.append((notes.end - notes.onset) / per_quarter)
            velocities.append(notes.velocity)
            pcs.append(len(np.unique(notes.pitch % 12)))
    return note_stats(durations, velocities, pcs)


def generated_stats(folder: Path) -> dict:
    durations, velocities, pcs = [], [], []
    for sample in json.loads((folder / "samples.json").read_text())["samples"]:
        notes = notes_from_midi(folder / sample["mid"])
        if len(notes):
            durations.append(notes.duration)
            velocities.append(notes.velocity)
            pcs.append(len(np.unique(notes.pitch % 12)))
    if not durations:
        return {"note_len": float("nan"), "one_step": float("nan"), "pcs": 0.0, "vel_mean": float("nan"),
                "vel_std": float("nan"), "notes": 0}
    return note_stats(durations, velocities, pcs)


def sampling_seconds(run_dir: Path, batch: int, length: int) -> float:
    """Seconds per sample of ``model.sample`` alone (default options, one batch), best of two."""
    model = load_checkpoint(run_dir).model
    canvas = torch.zeros(batch, ROLL_PLANES, NUM_PITCHES, length)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    times = []
    for seed in range(2):
        started = time.perf_counter()
        model.sample(canvas, mask, generator=torch.Generator().manual_seed(seed))
        times.append((time.perf_counter() - started) / batch)
    return min(times)


def run_case(config: str, name: str, data_dir: Path, args: argparse.Namespace, work: Path, log: Path) -> dict:
    tag = f"{Path(config).stem}-{name}"
    run_dir, gen_dir, report_dir = work / "runs" / tag, work / "samples" / tag, work / "reports" / tag
    started = time.perf_counter()
    fractalmidi("train", str(ROOT / config), f"data.root={data_dir}", f"logging.output_dir={run_dir}",
                f"training.max_minutes={args.minutes}", "training.max_steps=1000000", "logging.progress_bar=false",
                "--overwrite", log=log)
    train_s = time.perf_counter() - started
    fractalmidi("generate", "--checkpoint", str(run_dir), "--mode", "unconditional", "--length", str(args.length),
                "--num-samples", str(args.num_samples), "--batch-size", str(args.num_samples), "--seed", "0",
                "--out", str(gen_dir), "--overwrite", *args.sampling, log=log)
    sample_s = sampling_seconds(run_dir, args.num_samples, args.length)
    fractalmidi("evaluate", "--generated", str(gen_dir), "--reference", str(data_dir), "--out", str(report_dir),
                "--overwrite", log=log)
    report = json.loads((report_dir / "report.json").read_text())
    steps = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    return {"config": Path(config).stem, "dataset": name, "train_s": train_s, "steps": steps, "sample_s": sample_s,
            "oa_mean": report["metrics"]["oa_mean"], "oa_ceiling": report["ceiling"]["metrics"]["oa_mean"],
            "frechet": report["metrics"]["frechet"], "frechet_ceiling": report["ceiling"]["metrics"]["frechet"],
            "oa": report["metrics"]["oa"], **generated_stats(gen_dir)}


def table(rows: list[dict], targets: dict[str, dict]) -> str:
    head = ("| config | data | mean OA (ceiling) | Frechet (ceiling) | note len (q) | one-step | pitch cl. | "
            "velocity | s/sample | train |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, t in targets.items():
        lines.append(f"| *test split* | {name} | | | {t['note_len']:.2f} | {t['one_step']:.1%} | {t['pcs']:.1f} | "
                     f"{t['vel_mean']:.0f} ± {t['vel_std']:.0f} | | |")
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['dataset']} | {r['oa_mean']:.3f} ({r['oa_ceiling']:.3f}) | "
            f"{r['frechet']:.2f} ({r['frechet_ceiling']:.2f}) | {r['note_len']:.2f} | {r['one_step']:.1%} | "
            f"{r['pcs']:.1f} | {r['vel_mean']:.0f} ± {r['vel_std']:.0f} | {r['sample_s']:.2f} | "
            f"{r['steps']} steps, {r['train_s'] / 60:.1f} min |")
    lines += ["", "Per-feature OA:", "", "| config | data | " + " | ".join(FEATURES_SHOWN) + " |",
              "|---|---|" + "---|" * len(FEATURES_SHOWN)]
    for r in rows:
        scores = " | ".join(f"{r['oa'][k]:.2f}" for k in FEATURES_SHOWN)
        lines.append(f"| {r['config']} | {r['dataset']} | {scores} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per config and dataset")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS),
                        help="named datasets (default: all; none with a bare --datasets)")
    parser.add_argument("--folder", type=folder_arg, action="append", default=[], metavar="NAME=DIR",
                        help="also a folder of your own MIDI files, named NAME in the table (repeatable)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_quality")
    parser.add_argument("--sampling", nargs=argparse.REMAINDER, default=[],
                        help="extra generate flags, e.g. --sampling --temperature 0.9 (must come last)")
    parser.add_argument("--threads", type=int, help="torch threads per command (1 on a machine busy with other work: "
                                                      "two threads on one free core are many times slower)")
    parser.add_argument("--no-results", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "commands.log"
    load_before = os.getloadavg()
    targets, rows = {}, []
    folders = dict(args.folder)
    for name in [*args.datasets, *folders]:
        data_dir = prepare(name, args.work, log, folders)
        targets[name] = test_split_stats(data_dir)
        for config in args.configs:
            print(f"{Path(config).stem} on {name}: training {args.minutes:g} min ...", flush=True)
            rows.append(run_case(config, name, data_dir, args, args.work, log))
            print(table(rows[-1:], {}), flush=True)
    text = table(rows, targets)
    print(text)
    if not args.no_results:
        command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:])
        load = f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as handle:
            handle.write(f"\n## Music quality of the tiny presets ({stamp})\n\n"
                         f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {load}, "
                         f"{args.threads or 'default'} torch thread(s). Command: `{command}`. "
                         f"Training budget {args.minutes:g} min per row; {args.num_samples} unconditional samples of "
                         f"{args.length} steps against the test split.\n\n{text}\n")


if __name__ == "__main__":
    main()
