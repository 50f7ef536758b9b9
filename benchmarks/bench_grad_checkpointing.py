"""Peak memory and time of one training step with and without activation checkpointing (CPU).

Each case runs in a fresh subprocess so its peak RSS (``resource.getrusage``) is its own: build
the preset, one loss + backward on a batch of sparse random rolls (memory does not depend on
the notes), report the peak RSS and its rise over the RSS just before the step (activations
and gradients; the model's weights are in the baseline), and the RSS rise kept after the forward pass (the
activations saved for backward).

    .venv/bin/python benchmarks/bench_grad_checkpointing.py             # fractal-default, crop 256, batch 2
    .venv/bin/python benchmarks/bench_grad_checkpointing.py --append    # ... and append to RESULTS.md
    .venv/bin/python benchmarks/bench_grad_checkpointing.py --case jit-128x128:128:8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
MIB = 2**20
KIB = 2**10
NOTE_DENSITY = 0.03
"""Fraction of pixels holding a note, about a piano-roll's."""
DEFAULT_CASES = [("fractal-default", 256, 2)]
MACHINE = "2-core CPU, no GPU"


def _rss_bytes() -> int:
    """Current resident set size (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _child(preset: str, crop: int, batch: int, checkpointing: bool) -> dict:
    import torch

    from fractalmidi.models import build

    torch.manual_seed(0)
    model = build(preset, grad_checkpointing=checkpointing).train()
    notes = torch.rand(batch, 128, crop) < NOTE_DENSITY
    x = torch.stack([notes.float() * torch.randint(1, 128, notes.shape).float() / 127, notes.float()], 1)
    before = _rss_bytes()
    start = time.perf_counter()
    total, _ = model.loss(x)
    kept = _rss_bytes() - before
    total.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB  # Linux reports KiB
    return {"baseline_mib": before / MIB, "peak_mib": peak / MIB, "step_mib": (peak - before) / MIB,
            "kept_mib": kept / MIB, "seconds": seconds, "loss": total.item()}


def _run_case(preset: str, crop: int, batch: int, checkpointing: bool) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_grad_checkpointing as "
            f"b; "
            f"print(json.dumps(b._child({preset!r}, {crop}, {batch}, {checkpointing})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", default=None, help="preset:crop:batch (repeatable)")
    parser.add_argument("--append", action="store_true", help=f"append the table to {RESULTS.relative_to(REPO)}")
    args = parser.parse_args(argv)
    cases = [(p, int(c), int(b)) for p, c, b in (s.split(":") for s in args.case)] if args.case else DEFAULT_CASES
    header = ("| preset | crop | batch | checkpointing | peak RSS (MiB) | rise over baseline (MiB) | kept after "
              "forward (MiB) | step time (s) | loss |\n"
              "|--------|------|-------|---------------|----------------|--------------------------|--------------------------|---------------|------|")
    rows = []
    for preset, crop, batch in cases:
        results = {flag: _run_case(preset, crop, batch, flag) for flag in (False, True)}
        for flag, r in results.items():
            rows.append(f"| {preset} | {crop} | {batch} | {'on' if flag else 'off'} | {r['peak_mib']:.0f} | "
                        f"{r['step_mib']:.0f} | {r['kept_mib']:.0f} | {r['seconds']:.2f} | {r['loss']:.4f} |")
        off, on = results[False], results[True]
        rows.append(f"| {preset} | {crop} | {batch} | saving | {off['peak_mib'] - on['peak_mib']:.0f} "
                    f"({1 - on['peak_mib'] / off['peak_mib']:.0%}) | {off['step_mib'] - on['step_mib']:.0f} "
                    f"({1 - on['step_mib'] / off['step_mib']:.0%}) | {off['kept_mib'] - on['kept_mib']:.0f} "
                    f"({1 - on['kept_mib'] / off['kept_mib']:.0%}) | x{on['seconds'] / off['seconds']:.2f} | |")
    table = header + "\n" + "\n".join(rows)
    print(table)
    if args.append:
        given = argv if argv is not None else sys.argv[1:]
        command = "python benchmarks/bench_grad_checkpointing.py " + " ".join(given)
        with RESULTS.open("a") as f:
            f.write(f"\n## Activation checkpointing: one training step, peak memory ({dt.date.today()}, {MACHINE})\n\n"
                    f"Command: `{command.strip()}`. Fresh subprocess per row; sparse random rolls; torch "
                    f"threads default; other processes shared the CPU (times inflated).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
