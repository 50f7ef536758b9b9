"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

RESTORED_POSITION_EXCLUDES = ("lr_lambdas", "base_lrs", "_last_lr")
"""Scheduler state entries that describe the *old* schedule; a resume rebuilds them from the config."""


@dataclass
class WarmupCosine:
    """LR multiplier at optimizer step ``step`` (a ``LambdaLR`` lambda).

    A dataclass rather than a closure so the scheduler's ``state_dict`` holds plain numbers.
    """

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.0
    time_progress: float = 0.0
    """Share of a wall-clock budget spent (set by the trainer); the decay follows whichever of
    steps and time is further along."""

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max((step - self.warmup_steps) / span, self.time_progress))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConfiguredLambdaLR(LambdaLR):
    """A ``LambdaLR`` whose schedule always comes from the current config.

    Loading a saved state restores only the position (``last_epoch``, step count): the lambda and
    the base learning rates stay those this scheduler was built with, so ``--resume`` with a
    larger ``training.max_steps`` (or another ``lr`` / ``warmup_steps``) follows the new schedule
    from the saved step. With unchanged settings the restored learning rates are bit-identical.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in RESTORED_POSITION_EXCLUDES})
        self._apply()

    def follow_clock(self, progress: float) -> None:
        """Set the share of the wall-clock budget spent and apply it to the step about to run. Without this
        the first step after a resume ran at the step-based rate (the rebuilt lambdas start at no time
        spent), near the peak learning rate at the end of a budget."""
        for fn in self.lr_lambdas:
            fn.time_progress = progress
        self._apply()

    def _apply(self) -> None:
        """Set the optimizer's rates to the schedule at the current position."""
        lrs = [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]
        for group, base_lr, lr in zip(self.optimizer.param_groups, self.base_lrs, lrs, strict=True):
            group["initial_lr"] = base_lr  # the restored optimizer state carries the old run's
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                            min_ratio: float = 0.0) -> ConfiguredLambdaLR:
    """Warmup + cosine on ``optimizer``, stepped once per optimizer step."""
    return ConfiguredLambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))
