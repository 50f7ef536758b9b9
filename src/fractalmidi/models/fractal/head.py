"""The pixel head: a categorical over (binned) MIDI velocities for each pixel, 0 = silence."""

from __future__ import annotations

import torch
from torch import nn

from fractalmidi.models.layers import Mlp

MAX_VELOCITY = 127
"""Largest MIDI velocity; rolls hold ``velocity / MAX_VELOCITY``."""


def velocity_bins(x: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Float roll values in [0, 1] -> bin indices; bin 0 is exactly silence.

    Velocities ``1..127`` share ``num_bins - 1`` equal bins, so ``num_bins = 128`` is the identity
    on MIDI velocities and ``num_bins = 2`` is note on / off.
    """
    velocity = torch.round(x.clamp(0, 1) * MAX_VELOCITY).long()
    binned = 1 + torch.div((velocity - 1) * (num_bins - 1), MAX_VELOCITY, rounding_mode="floor")
    return torch.where(velocity > 0, binned, torch.zeros_like(velocity))


def bin_values(bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin indices -> roll values: the lowest velocity of each bin (so binning them is the identity)."""
    lowest = 1 + torch.div((bins - 1) * MAX_VELOCITY + num_bins - 2, num_bins - 1, rounding_mode="floor")
    return torch.where(bins > 0, lowest, torch.zeros_like(bins)).float() / MAX_VELOCITY


class PixelHead(nn.Module):
    """Maps the condition vectors of one pixel (its own and, under MAR, its neighbours') to logits."""

    def __init__(self, *, cond_dim: int, num_conds: int, width: int, depth: int, num_bins: int,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.inp = nn.Linear(num_conds * cond_dim, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.mlps = nn.ModuleList(Mlp(width, int(width * mlp_ratio)) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, num_bins)

    def forward(self, conds: list[torch.Tensor]) -> torch.Tensor:
        """``conds``: ``num_conds`` tensors ``(N, cond_dim)`` -> logits ``(N, num_bins)``."""
        h = self.inp(torch.cat(conds, dim=-1))
        for norm, mlp in zip(self.norms, self.mlps):
            h = h + mlp(norm(h))
        return self.out(self.out_norm(h))
