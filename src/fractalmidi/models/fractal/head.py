"""Pixel states and the pixel head: a categorical over what one pixel of a roll holds.

With ``note_states`` (the default) a pixel is silence (state 0), the held continuation of the
note sounding one step earlier (state 1, :data:`HOLD`), or the onset of a note with one of
``num_bins - 1`` velocity bins (states 2..). A held pixel carries no velocity of its own, so a
sampled note keeps the velocity of its onset, and a re-struck note is two notes. Without
``note_states`` a pixel is only silence or a velocity bin (``num_bins = 2``: binary on/off),
which is what binary benchmark data needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fractalmidi.data.roll import MAX_VELOCITY, ONSET_PLANE, VELOCITY_PLANE
from fractalmidi.models.layers import Mlp

SILENCE, HOLD = 0, 1
BIAS_HOLD, BIAS_ONSET = 0, 1
"""Rows of a per-pixel bias ``(2, N)`` (:meth:`PixelStates.draw`): added to the hold logit, to the onset logit."""
PIXEL_FEATURES = 3
"""What a level's patch embedding sees of each pixel: sounding, onset, velocity at the onset."""


def velocity_bins(velocity: torch.Tensor, num_bins: int) -> torch.Tensor:
    """MIDI velocities 0..127 -> bin indices; bin 0 is exactly silence.

    Velocities ``1..127`` share ``num_bins - 1`` equal bins, so ``num_bins = 128`` is the identity
    on MIDI velocities and ``num_bins = 2`` is note on / off.
    """
    binned = 1 + torch.div((velocity - 1) * (num_bins - 1), MAX_VELOCITY, rounding_mode="floor")
    return torch.where(velocity > 0, binned, torch.zeros_like(velocity))


def bin_velocities(bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin indices -> MIDI velocities: the lowest velocity of each bin (so binning them is the identity)."""
    lowest = 1 + torch.div((bins - 1) * MAX_VELOCITY + num_bins - 2, num_bins - 1, rounding_mode="floor")
    return torch.where(bins > 0, lowest, torch.zeros_like(bins))


class PixelStates(nn.Module):
    """The state vocabulary of one model: planes <-> states, and the features levels embed (a
    non-persistent buffer, so it follows the model's device and stays out of checkpoints)."""

    def __init__(self, num_bins: int, note_states: bool) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.note_states = note_states
        self.offset = 1 if note_states else 0
        """Onset state of velocity bin b is ``b + offset``."""
        self.count = num_bins + self.offset
        bins = torch.arange(1, num_bins)
        velocity = bin_velocities(bins, num_bins).float() / MAX_VELOCITY
        table = torch.zeros(self.count, PIXEL_FEATURES)
        table[bins + self.offset, 0] = 1.0
        table[bins + self.offset, 1] = 1.0 if note_states else 0.0
        table[bins + self.offset, 2] = velocity
        if note_states:
            table[HOLD, 0] = 1.0
        self.register_buffer("features", table, persistent=False)
        """``(count, PIXEL_FEATURES)``: row s describes state s to a patch embedding."""

    def from_planes(self, planes: torch.Tensor) -> torch.Tensor:
        """Roll planes ``(B, 2, H, W)`` -> states ``(B, H, W)`` (long), pixel by pixel."""
        velocity = torch.round(planes[:, VELOCITY_PLANE].clamp(0, 1) * MAX_VELOCITY).long()
        bins = velocity_bins(velocity, self.num_bins)
        if not self.note_states:
            return bins
        onset = planes[:, ONSET_PLANE] > 0.5
        return torch.where(bins == 0, bins, torch.where(onset, bins + self.offset, torch.full_like(bins, HOLD)))

    def draw(self, logits: torch.Tensor, temperature: float, sparsity_bias: float,
             generator: torch.Generator | None, velocity_min_p: float = 0.0,
             bias: torch.Tensor | None = None) -> torch.Tensor:
        """States ``(N,)`` from logits ``(N, count)``: the temperature (0 = greedy) and the silence bias shape
        what a pixel is (silence, hold, onset); an onset's velocity bin is drawn from the model's own
        distribution, since a tempered one narrows the music's dynamics, less the bins below
        ``velocity_min_p`` times its likeliest bin's probability (min-p: the tail holds velocities the
        data never uses, such as a 4 in chorales that are all 90). ``bias`` ``(2, N)``: each pixel's additions
        to its hold logit (row :data:`BIAS_HOLD`; > 0 = longer notes) and onset logit (row :data:`BIAS_ONSET`),
        the hold row ignored without note states. At temperature 1, no bias and no min-p this is exactly the
        softmax of ``logits``."""
        first = self.offset + 1  # the first state that carries a velocity bin
        loud = logits[:, first:]
        if velocity_min_p > 0:
            floor = loud.max(-1, keepdim=True).values + math.log(velocity_min_p)
            loud = loud.masked_fill(loud < floor, float("-inf"))
        kinds = torch.cat([logits[:, :first], torch.logsumexp(loud, -1, keepdim=True)], -1)
        if temperature > 0:
            kinds = kinds / temperature
        kinds[:, SILENCE] += sparsity_bias
        if bias is not None:
            if self.note_states:
                kinds[:, HOLD] += bias[BIAS_HOLD]
            kinds[:, first] += bias[BIAS_ONSET]
        if temperature <= 0:
            return torch.where(kinds.argmax(-1) == first, first + loud.argmax(-1), kinds.argmax(-1))
        kind = torch.multinomial(torch.softmax(kinds, -1), 1, generator=generator).squeeze(1)
        bins = torch.multinomial(torch.softmax(loud, -1), 1, generator=generator).squeeze(1)
        return torch.where(kind == first, first + bins, kind)

    def embed_input(self, states: torch.Tensor) -> torch.Tensor:
        """States ``(..., n)`` -> features ``(..., n * PIXEL_FEATURES)`` for a patch embedding."""
        return self.features[states].flatten(-2)

    def sounding(self, states: torch.Tensor) -> torch.Tensor:
        return states != SILENCE

    def onset(self, states: torch.Tensor) -> torch.Tensor:
        return states >= self.offset + 1 if self.note_states else torch.zeros_like(states, dtype=torch.bool)

    def velocity(self, states: torch.Tensor) -> torch.Tensor:
        """Velocity / 127 of onset (or velocity-bin) states, 0 for silence and holds: the middle of the state's
        bin (the identity with 128 bins; a binary model's notes sound at 64, not at its bin's lowest, 1)."""
        bins = (states - self.offset).clamp_min(0)
        if self.note_states:
            bins = torch.where(states > HOLD, bins, torch.zeros_like(bins))
        middle = torch.div(bin_velocities(bins, self.num_bins) + bin_velocities(bins + 1, self.num_bins) - 1, 2,
                           rounding_mode="floor")
        return torch.where(bins > 0, middle, torch.zeros_like(middle)).float() / MAX_VELOCITY


class PixelHead(nn.Module):
    """Maps the condition vectors of one pixel (its own and, under MAR, its neighbours') to state logits."""

    def __init__(self, *, cond_dim: int, num_conds: int, width: int, depth: int, num_states: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.inp = nn.Linear(num_conds * cond_dim, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.mlps = nn.ModuleList(Mlp(width, int(width * mlp_ratio), drop=dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, num_states)

    def forward(self, conds: list[torch.Tensor]) -> torch.Tensor:
        """``conds``: ``num_conds`` tensors ``(N, cond_dim)`` -> logits ``(N, num_states)``."""
        h = self.inp(torch.cat(conds, dim=-1))
        for norm, mlp in zip(self.norms, self.mlps):
            h = h + mlp(norm(h))
        return self.out(self.out_norm(h))
