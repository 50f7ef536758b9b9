"""Training speed and memory per preset: samples/s, peak memory, FLOPs per sample (and MFU on a GPU).

Each case runs in a fresh subprocess (so peak RSS is its own) under an address-space cap, doing
the trainer's real step: ``GeneratorModule`` loss on real prepared crops, backward, gradient
clipping and the AdamW + warmup/cosine step. One untimed warm-up step, then ``--steps`` timed.

    .venv/bin/python benchmarks/bench_train.py                 # CPU plan: tiny presets + seed sizes
    .venv/bin/python benchmarks/bench_train.py --append        # ... and append to benchmarks/RESULTS.md
    .venv/bin/python benchmarks/bench_train.py --case fractal-default:512:2:2   # preset:crop:batch:steps

On a CUDA machine the plan adds fp32 / bf16-mixed / bf16-mixed + torch.compile per preset and
model-FLOPs utilisation against the GPU's dense bf16 peak (``--peak-tflops`` to set it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
GIB = 2**30
MIB = 2**20
BYTES_PER_PARAM_ADAMW_FP32 = 16
"""fp32 weights + gradients + AdamW's two moments."""
DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}
"""Dense bf16 tensor-core peaks (TFLOP/s) by device-name substring, for MFU."""
CPU_PLAN = [
    # preset, crop, batch, timed steps
    ("fractal-tiny", 64, 8, 3),
    ("fractal-tiny", 32, 4, 5),
    ("fractal-ar-tiny", 64, 8, 3),
    ("jit-tiny", 64, 8, 5),
    ("fractal-default", 512, 1, 1),
    ("fractal-default", 512, 2, 1),
    ("fractal-ar", 256, 1, 1),
    ("jit-128x128", 128, 8, 2),
]
GPU_PLAN = [("fractal-default", 512, 8, 10), ("fractal-default", 256, 8, 10), ("fractal-ar", 256, 8, 10),
            ("jit-128x128", 128, 32, 10), ("jit-tiny", 64, 32, 20), ("fractal-tiny", 64, 32, 20)]
GPU_VARIANTS = [("32", False), ("bf16-mixed", False), ("bf16-mixed", True)]


def _prepared_jsb(workdir: Path) -> Path:
    from fractalmidi.cli import main
    from fractalmidi.settings import shared_data_dir

    out = workdir / "jsb"
    if main(["prepare", str(shared_data_dir() / "jsb_chorales"), "--out", str(out), "--workers", "0"]) != 0:
        raise SystemExit("could not prepare the JSB chorales (set FRACTALMIDI_DATA)")
    return out


def run_case(args: argparse.Namespace) -> dict:
    """One measurement in this process (the child side)."""
    if args.mem_cap_gib:
        cap = int(args.mem_cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fractalmidi.data import PianoRollDataset
    from fractalmidi.train.config import load_config
    from fractalmidi.train.module import GeneratorModule

    preset, crop, batch, steps = args.case.split(":")
    crop, batch, steps = int(crop), int(batch), int(steps)
    device = torch.device(args.device)
    cfg = load_config(None, base={"model": {"name": preset}, "data": {"root": args.data, "crop_length": crop},
                                  "training": {"batch_size": batch, "compile": args.compile}})
    torch.manual_seed(0)
    module = GeneratorModule(cfg).to(device)
    module.model.train()
    optim_cfg = module.configure_optimizers()
    optimizer, scheduler = optim_cfg["optimizer"], optim_cfg["lr_scheduler"]["scheduler"]
    data = PianoRollDataset(args.data, "train", crop_length=crop, seed=0)
    x = torch.stack([data[i % len(data)] for i in range(batch)]).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    def step() -> float:
        with autocast:
            loss, _ = module._loss_fn(x, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), cfg.training.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if args.precision != "bf16-mixed" and not args.compile:
        with FlopCounterMode(display=False) as counter:  # also the warm-up step
            step()
        flops = counter.get_total_flops()
    else:
        step()
        flops = None
    sync()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    sync()
    elapsed = time.perf_counter() - start
    params = sum(p.numel() for p in module.model.parameters())
    out = {
        "preset": preset, "crop": crop, "batch": batch, "steps": steps, "precision": args.precision,
        "compile": args.compile, "device": device.type, "params": params,
        "s_per_step": elapsed / steps, "samples_per_s": batch * steps / elapsed,
        "flops_per_sample": flops / batch if flops else None, "loss": losses[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / MIB
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _spawn(case: str, data: Path, args: argparse.Namespace, precision: str = "32", compile_: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--case", case, "--data", str(data), "--device", args.device,
           "--precision", precision, "--mem-cap-gib", str(args.mem_cap_gib)] + (["--compile"] if compile_ else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        name, crop, batch, _ = case.split(":")
        return {"preset": name, "crop": int(crop), "batch": int(batch), "precision": precision, "compile": compile_,
                "error": "out of memory (cap)" if "alloc" in tail.lower() or "memory" in tail.lower() else tail[:120]}
    return json.loads(lines[-1])


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict], peak_tflops: float | None) -> str:
    head = ("| preset | crop | batch | precision | compile | params | s/step | samples/s | GFLOP/sample | "
            "peak RSS MiB | peak GPU MiB | MFU |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['crop']} | {r['batch']} | {r['precision']} | {r['compile']} | "
                         f"{r['error']} | | | | | | |")
            continue
        gflop = r["flops_per_sample"] / 1e9 if r.get("flops_per_sample") else None
        mfu = None
        if peak_tflops and gflop and r["device"] == "cuda":
            mfu = gflop * 1e9 * r["samples_per_s"] / (peak_tflops * 1e12)
        lines.append(
            f"| {r['preset']} | {r['crop']} | {r['batch']} | {r['precision']} | {r['compile']} | "
            f"{r['params'] / 1e6:.2f}M | {r['s_per_step']:.2f} | {r['samples_per_s']:.2f} | {_fmt(gflop, '.3g')} | "
            f"{r['peak_rss_mib']:.0f} | {_fmt(r.get('peak_cuda_mib'), '.0f')} | {_fmt(mfu, '.1%')} |")
    return "\n".join(lines)


def memory_estimate(rows: list[dict], preset: str, crop: int, target_batch: int) -> str | None:
    """Linear fit of peak RSS over batch size (activations grow with the batch; weights + AdamW do not)."""
    pts = sorted((r["batch"], r["peak_rss_mib"]) for r in rows
                 if "error" not in r and r["preset"] == preset and r["crop"] == crop and r["device"] == "cpu")
    if len(pts) < 2:
        return None
    (b1, m1), (b2, m2) = pts[0], pts[-1]
    per_sample = (m2 - m1) / (b2 - b1)
    fixed = m1 - per_sample * b1
    params = next(r["params"] for r in rows if r.get("preset") == preset and "params" in r)
    return (f"{preset} at crop {crop}: peak RSS ~ {fixed:.0f} MiB + {per_sample:.0f} MiB x batch "
            f"(weights + grads + AdamW = {params * BYTES_PER_PARAM_ADAMW_FP32 / MIB:.0f} MiB) -> batch "
            f"{target_batch}: ~{(fixed + per_sample * target_batch) / 1024:.1f} GiB on a CPU (fp32, no activation "
            f"checkpointing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help="preset:crop:batch:steps (one case; default: the plan for this machine)")
    parser.add_argument("--data", help="prepared data folder (default: JSB chorales prepared into a temp folder)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument("--mem-cap-gib", type=float, default=10.0, help="address-space cap per case (CPU safety)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per case")
    parser.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak for MFU (default: by device name)")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.child:
        print(json.dumps(run_case(args)), flush=True)
        return
    if args.device == "cuda":
        args.mem_cap_gib = 0.0  # an address-space cap breaks the CUDA runtime
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else _prepared_jsb(Path(tmp))
        if args.case:
            cases = [(args.case, args.precision, args.compile)]
        elif args.device == "cuda":
            cases = [(f"{p}:{c}:{b}:{s}", prec, comp) for p, c, b, s in GPU_PLAN for prec, comp in GPU_VARIANTS]
        else:
            cases = [(f"{p}:{c}:{b}:{s}", "32", False) for p, c, b, s in CPU_PLAN]
        rows = []
        for case, precision, compile_ in cases:
            row = _spawn(case, data, args, precision, compile_)
            rows.append(row)
            print(json.dumps(row), flush=True)
    peak = args.peak_tflops
    if args.device == "cuda" and peak is None:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in DENSE_BF16_TFLOPS.items() if k in name), None)
    text = table(rows, peak)
    notes = [n for n in {memory_estimate(rows, r["preset"], r["crop"], 8) for r in rows if "error" not in r} if n]
    machine = ("2-core CPU, no GPU" if args.device == "cpu"
               else f"{torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)")
    print(text)
    for note in notes:
        print(note)
    if args.append:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = "$ .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
        section = [f"\n## train: samples/s and peak memory per preset ({stamp})", "",
                   f"Machine: {machine}; torch {torch.__version__}, Python {platform.python_version()}. "
                   f"Command: `{command.strip()}`", "", text, ""] + [f"- {n}" for n in notes]
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n")
        with RESULTS.open("a") as handle:
            handle.write("\n".join(section) + "\n")


if __name__ == "__main__":
    main()
