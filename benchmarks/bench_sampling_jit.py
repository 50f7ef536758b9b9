"""Only the JiT rows of bench_sampling.py (its ``JIT_CASES``), steadier on a shared CPU.

One intra-op thread and the best of several runs for the tiny preset; prints the table and,
with ``--write``, appends a section to benchmarks/RESULTS.md. The full
``bench_sampling.py`` runs the same JiT cases next to the FractalGen ones.

    .venv/bin/python benchmarks/bench_sampling_jit.py --write
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling as bench  # noqa: E402 (a sibling script, not a package)

TINY_REPEATS = 3
"""Best-of-N for presets that sample in well under a second (one run is noise on a busy CPU)."""
TINY_PRESET = "jit-tiny"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    parser.add_argument("--write", action="store_true", help=f"append the section to {bench.RESULTS.name}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for device in bench._devices():
        for case in bench.JIT_CASES:
            if device.type not in case.devices:
                continue
            for length in case.lengths:
                for batch in case.batches:
                    repeats = TINY_REPEATS if case.preset == TINY_PRESET else 1
                    runs = [bench._isolated(bench.time_sampling, case, device, length, batch) for _ in range(repeats)]
                    rows.append(min(runs, key=lambda row: row["s_per_sample"]))
                    print(bench._table(rows[-1:], bench.SAMPLE_COLUMNS).splitlines()[-1], flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = "; ".join(f"{d.type}: {bench._device_name(d)}" for d in bench._devices())
    machine = "2-core CPU, no GPU" if not torch.cuda.is_available() else names
    command = " ".join(["python benchmarks/bench_sampling_jit.py", *(sys.argv[1:] if argv is None else argv)])
    text = "\n".join([
        f"## sampling: JiT presets ({stamp})", "",
        f"Machine: {machine}. Devices: {names}. torch {torch.__version__}. Command: `{command}`",
        "One `sample` call per row on an empty canvas (unconditional), untrained weights; Heun makes"
        " 2 * steps - 1 network calls, Euler steps calls (the last step of both is one call that lands on t = 1)."
        f" {TINY_PRESET} rows: best of {TINY_REPEATS} runs, others: one run.", "",
        bench._table(rows, bench.SAMPLE_COLUMNS),
    ])
    print()
    print(text)
    if args.write:
        bench.append_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
