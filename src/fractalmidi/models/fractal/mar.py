"""MAR level: bidirectional transformer over partly masked patches (Li et al., MAR / FractalGen).

Training masks a large random fraction of the patches; sampling unmasks them over a few
iterations in a random order with a cosine schedule (see :mod:`.masking`, :mod:`.sampling`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fractalmidi.models.fractal.head import PIXEL_FEATURES
from fractalmidi.models.fractal.level import LevelNet, RegionFill
from fractalmidi.models.fractal.masking import cosine_remaining, likelihood_mask, random_ranks, training_mask
from fractalmidi.models.layers import learned_embedding

PITCH_AXIS, TIME_AXIS = 1, 2
"""Grid axes of per-patch values laid out ``(N, pitch bands, time spans, ...)``."""


def _from_neighbour(values: torch.Tensor, axis: int, offset: int) -> torch.Tensor:
    """At every patch of ``values`` ``(N, bands, spans, C)``, the value of its neighbour ``offset`` (-1 or +1)
    patches along ``axis``; zeros beyond the roll's edge."""
    pad = [0, 0] * (values.dim() - axis - 1) + ([1, 0] if offset < 0 else [0, 1])
    return F.pad(values, pad).narrow(axis, 0 if offset < 0 else 1, values.shape[axis])


class MARLevel(LevelNet):
    """Predicts a condition for every masked patch from the visible ones and the parent's conditions."""

    kind: ClassVar[str] = "mar"
    causal: ClassVar[bool] = False
    exact_likelihood: ClassVar[bool] = False
    child_num_conds: ClassVar[int] = 5

    def __init__(self, *, seams: bool = False, **kwargs) -> None:
        """``seams``: each patch also hands down the pixels along its left and right edges (see :meth:`seams`)."""
        super().__init__(**kwargs)
        self.mask_token = learned_embedding(self.width)
        edge = self.patch_size * PIXEL_FEATURES + 1  # one column of pixel features and a "visible" flag
        self.seam_embed = nn.Linear(2 * edge, self.width) if seams else None
        self.child_num_conds = type(self).child_num_conds + (1 if seams else 0)

    def forward(self, tokens: torch.Tensor, masked: torch.Tensor, conds: list[torch.Tensor],
                grid: tuple[int, int], marks: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` ``(N, L, p*p*PIXEL_FEATURES)`` pixel features, ``masked`` ``(N, L)`` bool
        -> outputs ``(N, L, width)``."""
        x = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), self.patch_embed(tokens))
        x = x + self.positions(grid, tokens.device)
        if marks is not None:
            x = x + marks
        h = self.transform(torch.cat([self.embed_conds(conds), x], dim=1))
        return h[:, self.num_conds:]

    def teacher_forced(self, features: torch.Tensor, conds: list[torch.Tensor], grid: tuple[int, int], *,
                       estimate: bool, mask_ratio_min: float, generator: torch.Generator | None,
                       marks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training hides a random share of patches; the likelihood estimate hides an any-order
        random subset, weighted so that the estimate is unbiased."""
        n, length = features.shape[:2]
        if estimate:
            chosen, scale = likelihood_mask(n, length, features.device, generator)
        else:
            chosen = training_mask(n, length, mask_ratio_min, features.device)
            scale = torch.ones(n, device=features.device)
        return self(features, chosen, conds, grid, marks), chosen, scale

    def fill(self, current: torch.Tensor, generate: torch.Tensor, conds: list[torch.Tensor],
             grid: tuple[int, int], cfg: float, region: RegionFill,
             frames: list[torch.Tensor] | None, marks: torch.Tensor | None = None) -> torch.Tensor:
        """Reveal the patches to generate over ``region.num_iter`` steps in a random order (cosine
        schedule); a top level ramps the guidance scale with the share revealed."""
        n, length, dim = current.shape
        todo = generate.any(-1)
        unknown = todo.sum(1)
        scores = torch.rand(n, length, device=current.device, generator=region.generator)
        ranks = random_ranks(torch.where(todo, scores, torch.full_like(scores, 2.0)))
        masked = todo
        marks = None if marks is None else region.double(marks)
        num_iter = max(1, min(region.num_iter, length))
        for step in range(num_iter):
            remaining = cosine_remaining(unknown, masked.sum(1), step, num_iter)
            masked_next = ranks < remaining[:, None]
            predict = masked & ~masked_next
            if predict.any():
                features = region.embed(current)
                out = self(features, region.double(masked), conds, grid, marks)
                index = predict.reshape(-1).nonzero().squeeze(1)
                revealed = 1.0 - float(remaining.sum()) / float(unknown.sum())
                scale = 1.0 + (cfg - 1.0) * revealed if region.top else cfg
                flat = current.reshape(-1, dim)
                child = self.child_conds(out, grid, features, region.double(~masked))
                values = region.children(flat[index], generate.reshape(-1, dim)[index], region.take(child, index),
                                         scale, index)
                current = flat.index_copy(0, index, values).reshape(n, length, dim)
            masked = masked_next
            if frames is not None:
                frames.append(current)
        return current

    def child_conds(self, out: torch.Tensor, grid: tuple[int, int], features: torch.Tensor | None = None,
                    visible: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The patch's own output plus its four grid neighbours' (zeros beyond the edge), and with
        ``seams`` the :meth:`seams` of the ``visible`` patches' pixel ``features``.

        Order: own, lower pitch band, higher pitch band, previous time span, next time span[, seams].
        """
        conds = self._neighbour_conds(out, grid)
        if self.seam_embed is not None:
            conds.append(self.seams(features, visible, grid))
        return conds

    def seams(self, features: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(N, L, width)``: the last pixel column of each patch's left neighbour and the first of its right
        neighbour, where that neighbour is ``visible`` (known context), else zeros with the flag off.

        A note crossing a patch boundary is written by two patches; the neighbours' transformer outputs
        say roughly what is there, these columns say exactly which pitches sound, start or hold at the
        seam, so the next level can continue a note instead of re-striking it or leaving a stray step.
        """
        n, length, _ = features.shape
        p = self.patch_size
        g = features.reshape(n, grid[0], grid[1], p, p, PIXEL_FEATURES)
        shown = visible.reshape(n, grid[0], grid[1], 1).to(features.dtype)
        left = torch.cat([g[:, :, :, :, p - 1].flatten(3), torch.ones_like(shown)], -1) * shown
        right = torch.cat([g[:, :, :, :, 0].flatten(3), torch.ones_like(shown)], -1) * shown
        edges = [_from_neighbour(left, TIME_AXIS, -1), _from_neighbour(right, TIME_AXIS, 1)]  # before / after
        return self.seam_embed(torch.cat(edges, -1).reshape(n, length, -1))

    def _neighbour_conds(self, out: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        n, length, width = out.shape
        g = out.reshape(n, grid[0], grid[1], width)
        neighbours = [(PITCH_AXIS, -1), (PITCH_AXIS, 1), (TIME_AXIS, -1), (TIME_AXIS, 1)]
        return [out] + [_from_neighbour(g, axis, offset).reshape(n, length, width) for axis, offset in neighbours]
