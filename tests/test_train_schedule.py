"""The LR schedule on resume: the current config decides the schedule, the checkpoint only the position."""

from __future__ import annotations

import copy

import pytest
import torch

from fractalmidi.train.schedule import WarmupCosine, warmup_cosine_scheduler

LR = 1e-3
WARMUP = 2


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    param = torch.nn.Parameter(torch.ones(3))
    return torch.optim.AdamW([param], lr=lr, betas=(0.9, 0.95))


def _step(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> float:
    """One training step; returns the learning rate it used."""
    lr = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad()
    optimizer.param_groups[0]["params"][0].sum().backward()
    optimizer.step()
    scheduler.step()
    return lr


def _run(steps: int, total: int, lr: float = LR) -> tuple[list[float], dict, dict]:
    optimizer = _optimizer(lr)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=WARMUP, total_steps=total)
    used = [_step(optimizer, scheduler) for _ in range(steps)]
    return used, copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())


def _resume(opt_state: dict, sched_state: dict, steps: int, total: int, lr: float = LR) -> list[float]:
    optimizer = _optimizer(lr)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=WARMUP, total_steps=total)
    optimizer.load_state_dict(opt_state)  # Lightning's order: optimizer, then scheduler
    scheduler.load_state_dict(sched_state)
    return [_step(optimizer, scheduler) for _ in range(steps)]


def test_resume_with_unchanged_settings_is_bit_exact() -> None:
    straight, _, _ = _run(10, total=10)
    first, opt_state, sched_state = _run(4, total=10)
    assert first + _resume(opt_state, sched_state, 6, total=10) == straight  # exact floats, not approx


def test_resume_with_more_steps_follows_the_new_schedule() -> None:
    """`--resume RUN training.max_steps=2N`: steps N..2N decay over 2N, not stuck at the old floor."""
    _, opt_state, sched_state = _run(6, total=6)
    resumed = _resume(opt_state, sched_state, 6, total=12)
    expected = [LR * WarmupCosine(WARMUP, 12)(step) for step in range(6, 12)]
    assert resumed == pytest.approx(expected, rel=1e-12)
    assert min(resumed) > 0.0
    assert resumed[0] == pytest.approx(LR * 0.5 * (1 + torch.cos(torch.tensor(0.4 * torch.pi)).item()))


def test_resume_with_another_lr_scales_the_schedule() -> None:
    _, opt_state, sched_state = _run(4, total=10)
    resumed = _resume(opt_state, sched_state, 2, total=10, lr=2 * LR)
    assert resumed == pytest.approx([2 * LR * WarmupCosine(WARMUP, 10)(step) for step in (4, 5)], rel=1e-12)


def test_the_first_step_after_a_resume_follows_the_clock() -> None:
    """With a wall-clock budget (`training.max_minutes`) the decay follows the time spent; after a resume
    the very first step must too. It used to run at the step-based rate: near the peak LR with a large
    max_steps, even at the end of the budget (the shipped `bach` model's 1-minute resume moved every
    weight by up to 2.5e-3 and changed what it writes)."""
    huge = 100_000  # max_steps when the clock is the limit
    _, opt_state, sched_state = _run(50, total=huge)
    optimizer = _optimizer()
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=WARMUP, total_steps=huge)
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(sched_state)
    assert optimizer.param_groups[0]["lr"] > 0.99 * LR  # the step-based position alone: near the peak
    scheduler.follow_clock(0.99)  # what the trainer does at every batch start
    expected = LR * WarmupCosine(WARMUP, huge, time_progress=0.99)(50)
    assert _step(optimizer, scheduler) == pytest.approx(expected, rel=1e-12) and expected < 1e-3 * LR
