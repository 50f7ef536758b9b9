"""Sampling speed and memory of generator presets, through the model contract only.

Seconds per sample and samples/s for each (preset, sample options) case at several lengths
and batch sizes, on the CPU and, when CUDA is available, on the GPU; plus the KV-cache
speed-up of autoregressive FractalGen levels. Prints a table and appends a section to
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_sampling.py            # full run
    .venv/bin/python benchmarks/bench_sampling.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from fractalmidi.data.roll import ROLL_PLANES
from fractalmidi.models import build
from fractalmidi.models.fractal.head import PIXEL_FEATURES

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
LENGTHS = (256, 512)
BATCHES = (1, 16)
SEED = 0


@dataclass(frozen=True)
class Case:
    """One row group: a preset, its sample options, and (optionally) narrower lengths/batches."""

    preset: str
    options: dict[str, Any] = field(default_factory=dict)
    lengths: tuple[int, ...] = LENGTHS
    batches: tuple[int, ...] = BATCHES
    devices: tuple[str, ...] = ("cpu", "cuda")


# ----- FractalGen cases (family-specific options: num_iter_list per level, temperature, ...) -----
FRACTAL_CASES = [
    Case("fractal-tiny", {}),
    Case("fractal-default", {"num_iter_list": [4, 1, 1]}),
    Case("fractal-default", {}, devices=("cuda",)),
    # all-AR: one sequential step per pixel (128 x T), so only short rolls on a CPU
    Case("fractal-ar-tiny", {}, lengths=(32,), batches=(1, 16)),
]

# ----- JiT cases: seconds per sample against the number of ODE steps, Euler vs Heun -----
# (Heun costs 2 * steps - 1 network calls, Euler steps; jit-B/L are 130M/457M parameters, so the
# CPU gets jit-B only at few steps, the GPU the full grid.)
JIT_CASES = [
    Case("jit-tiny", {"steps": steps, "sampler": sampler}, lengths=(256,))
    for sampler in ("euler", "heun") for steps in (10, 25, 50)
] + [
    Case("jit-tiny", {"steps": 25, "sampler": "heun"}, lengths=(1024,)),
    Case("jit-B", {"steps": 10, "sampler": "euler"}, lengths=(256,)),
    Case("jit-B", {"steps": 10, "sampler": "heun"}, lengths=(256,), batches=(1,)),
    Case("jit-128x128", {"steps": 50, "sampler": "heun"}, lengths=(128,), devices=("cuda",)),
] + [
    Case(preset, {"steps": steps, "sampler": sampler}, lengths=(256, 1024), devices=("cuda",))
    for preset in ("jit-B", "jit-L") for sampler in ("euler", "heun") for steps in (25, 50)
]

CASES = FRACTAL_CASES + JIT_CASES
QUICK_CASES = [Case("fractal-tiny", {"num_iter_list": [2, 1, 1]}, lengths=(256,), batches=(1,))]


def _devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, torch threads={torch.get_num_threads()})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} (GPU)"
    # ru_maxrss (KiB on Linux) of the forked process that ran only this row
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} (RSS)"


def _isolated(fn, *args: Any) -> Any:
    """Run a CPU row in a forked child so its peak RSS is its own (CUDA rows run in-process)."""
    if any(isinstance(a, torch.device) and a.type == "cuda" for a in args):
        return fn(*args)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def time_sampling(case: Case, device: torch.device, length: int, batch: int) -> dict[str, Any]:
    """One timed ``sample`` call on an empty canvas, everything to generate."""
    torch.manual_seed(SEED)
    model = build(case.preset).to(device).eval()
    canvas = torch.zeros(batch, ROLL_PLANES, 128, length, device=device)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    generator = torch.Generator(device=device).manual_seed(SEED)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        model.sample(canvas[:1], mask[:1], generator=generator, **case.options)  # warm-up (kernels, allocator)
    _sync(device)
    start = time.perf_counter()
    out = model.sample(canvas, mask, generator=generator, **case.options)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"preset": case.preset, "options": case.options, "device": device.type, "T": length, "batch": batch,
            "s_per_sample": seconds / batch, "samples_per_s": batch / seconds, "peak_mb": _peak_memory_mb(device),
            "density": float((out[:, 0] > 0).float().mean())}


def kv_cache_speedup(preset: str, length: int, device: torch.device) -> dict[str, Any]:
    """Top AR level of ``preset``: generate its L outputs with the KV cache vs one full causal pass per step."""
    torch.manual_seed(SEED)
    model = build(preset).to(device).eval()
    level = model.levels[0]
    size = model.patch_sizes[0]
    grid = (128 // size, length // size)
    steps = grid[0] * grid[1]
    tokens = torch.rand(1, steps, size * size * PIXEL_FEATURES, device=device)
    conds = [model.start.expand(1, -1)]
    order = level.order(grid, device).tolist()
    with torch.no_grad():
        _sync(device)
        start = time.perf_counter()
        caches = level.new_caches()
        level.start(conds, caches)
        for pos in order[:-1]:
            level.step(tokens[:, pos], pos, grid, caches)
        _sync(device)
        cached = time.perf_counter() - start
        start = time.perf_counter()
        for _ in order:  # no cache: the whole sequence again at every step (its last output is the new one)
            level(tokens, conds, grid)
        _sync(device)
        full = time.perf_counter() - start
    return {"preset": preset, "device": device.type, "T": length, "steps": steps,
            "cached_s": cached, "uncached_s": full, "speedup": full / cached}


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("-" * (len(title) + 2) for _, title, _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(format(row[key], fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


SAMPLE_COLUMNS = [("preset", "preset", ""), ("options", "sample options", ""), ("device", "device", ""),
                  ("T", "T", "d"), ("batch", "batch", "d"), ("s_per_sample", "s / sample", ".3f"),
                  ("samples_per_s", "samples / s", ".3f"), ("peak_mb", "peak MiB", ""),
                  ("density", "note density", ".3f")]
KV_COLUMNS = [("preset", "preset (top AR level)", ""), ("device", "device", ""), ("T", "T", "d"),
              ("steps", "steps", "d"), ("cached_s", "with KV cache (s)", ".3f"),
              ("uncached_s", "full pass per step (s)", ".3f"), ("speedup", "speed-up", ".1f")]


def append_results(text: str) -> None:
    """Append our section; create the file with its header when absent (atomic rewrite)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(old.rstrip("\n") + "\n\n" + text + "\n")
    tmp.replace(RESULTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny case and a short KV-cache check")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU intra-op threads (default: torch's choice; "
                             "1 is faster for tiny models on a busy CPU)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not append to {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = QUICK_CASES if args.quick else CASES
    rows, kv_rows, names = [], [], []
    for device in _devices():
        names.append(f"{device.type}: {_device_name(device)}")
        for case in cases:
            if device.type not in case.devices:
                continue
            for length in case.lengths:
                for batch in case.batches:
                    rows.append(_isolated(time_sampling, case, device, length, batch))
                    print(_table(rows[-1:], SAMPLE_COLUMNS).splitlines()[-1], flush=True)
        kv_cases = [("fractal-ar-tiny", 256)] if args.quick else [("fractal-ar-tiny", 256), ("fractal-ar", 256),
                                                                  ("fractal-ar-tiny", 1024)]
        for preset, length in kv_cases:
            kv_rows.append(kv_cache_speedup(preset, length, device))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(["benchmarks/bench_sampling.py"] + list(sys.argv[1:] if argv is None else argv))
    machine = "2-core CPU, no GPU" if not torch.cuda.is_available() else "; ".join(names)
    text = "\n".join([
        f"## sampling ({stamp})", "",
        f"Machine: {machine}. Devices: {'; '.join(names)}. torch {torch.__version__}. Command: `{command}`",
        "One `sample` call per row on an empty canvas (everything generated), untrained weights (speed does not"
        " depend on them); s / sample = wall time / batch. CPU peak memory: peak RSS of a fresh process per row"
        " (torch itself included).", "",
        _table(rows, SAMPLE_COLUMNS), "",
        "KV cache: the top AR level generating its outputs one patch at a time (cached) vs re-running the full"
        " causal pass at every step (no cache).", "",
        _table(kv_rows, KV_COLUMNS),
    ])
    print()
    print(text)
    if not args.no_write:
        append_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
