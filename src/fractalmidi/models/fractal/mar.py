"""MAR level: bidirectional transformer over partly masked patches (Li et al., MAR / FractalGen).

Training masks a large random fraction of the patches; sampling unmasks them over a few
iterations in a random order with a cosine schedule (see :mod:`.masking`, :mod:`.sampling`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from fractalmidi.models.fractal.level import LevelNet
from fractalmidi.models.layers import learned_embedding


class MARLevel(LevelNet):
    """Predicts a condition for every masked patch from the visible ones and the parent's conditions."""

    kind: ClassVar[str] = "mar"
    causal: ClassVar[bool] = False
    child_num_conds: ClassVar[int] = 5

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mask_token = learned_embedding(self.width)

    def forward(self, tokens: torch.Tensor, masked: torch.Tensor, conds: list[torch.Tensor],
                grid: tuple[int, int]) -> torch.Tensor:
        """``tokens`` ``(N, L, p*p*PIXEL_FEATURES)`` pixel features, ``masked`` ``(N, L)`` bool -> outputs ``(N, L, width)``."""
        x = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), self.patch_embed(tokens))
        x = x + self.positions(grid, tokens.device)
        h = self.transform(torch.cat([self.embed_conds(conds), x], dim=1))
        return h[:, self.num_conds:]

    def child_conds(self, out: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        """The patch's own output plus its four grid neighbours' (zeros beyond the edge).

        Order: own, lower pitch band, higher pitch band, previous time span, next time span.
        """
        n, length, width = out.shape
        g = out.reshape(n, grid[0], grid[1], width)
        lower = F.pad(g, (0, 0, 0, 0, 1, 0))[:, :-1]
        higher = F.pad(g, (0, 0, 0, 0, 0, 1))[:, 1:]
        before = F.pad(g, (0, 0, 1, 0))[:, :, :-1]
        after = F.pad(g, (0, 0, 0, 1))[:, :, 1:]
        return [out] + [t.reshape(n, length, width) for t in (lower, higher, before, after)]
