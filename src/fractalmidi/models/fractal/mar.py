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
from fractalmidi.models.fractal.level import LevelNet
from fractalmidi.models.layers import learned_embedding


class MARLevel(LevelNet):
    """Predicts a condition for every masked patch from the visible ones and the parent's conditions."""

    kind: ClassVar[str] = "mar"
    causal: ClassVar[bool] = False
    child_num_conds: ClassVar[int] = 5

    def __init__(self, *, seams: bool = False, **kwargs) -> None:
        """``seams``: each patch also hands down the pixels along its left and right edges (see :meth:`seams`)."""
        super().__init__(**kwargs)
        self.mask_token = learned_embedding(self.width)
        edge = self.patch_size * PIXEL_FEATURES + 1  # one column of pixel features and a "visible" flag
        self.seam_embed = nn.Linear(2 * edge, self.width) if seams else None
        self.child_num_conds = type(self).child_num_conds + (1 if seams else 0)

    def forward(self, tokens: torch.Tensor, masked: torch.Tensor, conds: list[torch.Tensor],
                grid: tuple[int, int]) -> torch.Tensor:
        """``tokens`` ``(N, L, p*p*PIXEL_FEATURES)`` pixel features, ``masked`` ``(N, L)`` bool -> outputs ``(N, L, width)``."""
        x = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), self.patch_embed(tokens))
        x = x + self.positions(grid, tokens.device)
        h = self.transform(torch.cat([self.embed_conds(conds), x], dim=1))
        return h[:, self.num_conds:]

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
        left = F.pad(left, (0, 0, 1, 0))[:, :, :-1]  # the patch before in time
        right = F.pad(right, (0, 0, 0, 1))[:, :, 1:]  # the patch after
        return self.seam_embed(torch.cat([left, right], -1).reshape(n, length, -1))

    def _neighbour_conds(self, out: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        n, length, width = out.shape
        g = out.reshape(n, grid[0], grid[1], width)
        lower = F.pad(g, (0, 0, 0, 0, 1, 0))[:, :-1]
        higher = F.pad(g, (0, 0, 0, 0, 0, 1))[:, 1:]
        before = F.pad(g, (0, 0, 1, 0))[:, :, :-1]
        after = F.pad(g, (0, 0, 0, 1))[:, :, 1:]
        return [out] + [t.reshape(n, length, width) for t in (lower, higher, before, after)]
