"""Which patches a MAR level hides: at training, for likelihood estimates, and while sampling."""

from __future__ import annotations

import math

import torch

MASK_RATIO_LOC = 1.0
MASK_RATIO_SCALE = 0.25
"""Training mask ratios follow a normal around 1.0 (std 0.25) truncated to [min_ratio, 1] (MAR)."""


def random_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every entry along the last axis (0 = smallest score): a random order from random scores."""
    return torch.argsort(torch.argsort(scores, dim=-1), dim=-1)


def training_mask(num_regions: int, length: int, min_ratio: float, device: torch.device) -> torch.Tensor:
    """``(N, L)`` bool, True = masked: a random order per region, a truncated-normal share masked."""
    ratios = torch.empty(num_regions, device=device)
    torch.nn.init.trunc_normal_(ratios, mean=MASK_RATIO_LOC, std=MASK_RATIO_SCALE, a=min_ratio, b=1.0)
    count = torch.ceil(ratios * length).clamp(1, length)
    ranks = random_ranks(torch.rand(num_regions, length, device=device))
    return ranks < count[:, None]


def likelihood_mask(num_regions: int, length: int, device: torch.device,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask for a one-sample estimate of the any-order NLL, and the weight of each masked patch.

    A step k ~ U{1..L} of a random order: the L - k + 1 patches still hidden are scored given the
    k - 1 visible ones and weighted by L / (L - k + 1), an unbiased estimate of the sum over steps.
    """
    count = torch.randint(1, length + 1, (num_regions,), device=device, generator=generator)
    ranks = random_ranks(torch.rand(num_regions, length, device=device, generator=generator))
    return ranks < count[:, None], length / count.float()


def cosine_remaining(unknown: torch.Tensor, still_masked: torch.Tensor, step: int, num_iter: int) -> torch.Tensor:
    """How many patches stay masked after ``step`` (cosine schedule), per region; 0 after the last step.

    At least one patch is revealed per step while any is hidden (``unknown`` = patches to generate).
    """
    if step >= num_iter - 1:
        return torch.zeros_like(unknown)
    ratio = math.cos(math.pi / 2 * (step + 1) / num_iter)
    planned = torch.floor(unknown.float() * ratio).long()
    return torch.minimum(planned, (still_masked - 1).clamp(min=0))
