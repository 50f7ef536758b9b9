"""``fractalmidi prepare`` with a converter that crashes on one file or is slowed down: what the
tests that kill or interrupt a prepare run need, kept out of the package.

    python tests/hooked_prepare.py [--crash-on NAME] [--slow-s SECONDS] PREPARE_ARGS...

The worker processes are spawned, so the hook is a picklable object that carries its settings.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fractalmidi.data.prepare as prepare_module
from fractalmidi.cli import main
from fractalmidi.data.sources import convert_job

SCRIPT = Path(__file__).resolve()
CRASH_EXIT_CODE = 134
"""Exit status of the simulated crash (that of SIGABRT), without leaving a core dump."""


@dataclass(frozen=True)
class HookedConvert:
    """``convert_job`` that dies on the spot on a file named ``crash_on`` (as a crashing parser
    would) and takes ``slow_s`` more seconds per job (to interrupt a run half-way)."""

    crash_on: str | None = None
    slow_s: float = 0.0

    def __call__(self, job: Any, *args: Any) -> Any:
        if self.crash_on and Path(job.key).name == self.crash_on:
            os._exit(CRASH_EXIT_CODE)
        time.sleep(self.slow_s)
        return convert_job(job, *args)


def command(*prepare_args: Any, crash_on: str | None = None, slow_s: float = 0.0) -> list[str]:
    """The argv that runs ``fractalmidi prepare PREPARE_ARGS`` with these hooks."""
    hooks = (["--crash-on", crash_on] if crash_on else []) + (["--slow-s", str(slow_s)] if slow_s else [])
    return [sys.executable, str(SCRIPT), *hooks, *map(str, prepare_args)]


def _split(argv: list[str]) -> tuple[HookedConvert, list[str]]:
    settings: dict[str, Any] = {}
    while argv and argv[0] in ("--crash-on", "--slow-s"):
        flag, value, argv = argv[0], argv[1], argv[2:]
        settings["crash_on" if flag == "--crash-on" else "slow_s"] = value if flag == "--crash-on" else float(value)
    return HookedConvert(**settings), argv


if __name__ == "__main__":
    hook, rest = _split(sys.argv[1:])
    prepare_module.convert_job = hook
    raise SystemExit(main(["prepare", *rest]))
