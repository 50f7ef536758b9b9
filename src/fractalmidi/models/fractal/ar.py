"""AR level: causal transformer over the patches in a scan order, with a KV cache for sampling.

``row_major`` scans time first (every time span of the lowest pitch band, then the next band);
``column_major`` scans pitch first (every pitch band of a time span, then the next span).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fractalmidi.models.fractal.level import LevelNet
from fractalmidi.models.layers import KVCache

SCAN_ORDERS = ("row_major", "column_major")


class ARLevel(LevelNet):
    """Output for the i-th patch in scan order sees the conditions and patches 0 .. i-1 only."""

    kind: ClassVar[str] = "ar"
    causal: ClassVar[bool] = True
    child_num_conds: ClassVar[int] = 1

    def __init__(self, *, scan_order: str = "row_major", **kwargs) -> None:
        if scan_order not in SCAN_ORDERS:
            raise ValueError(f"scan_order {scan_order!r} is not one of {', '.join(SCAN_ORDERS)}")
        super().__init__(**kwargs)
        self.scan_order = scan_order

    def order(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Grid indices (row-major numbering) in the order this level generates them."""
        index = torch.arange(grid[0] * grid[1], device=device)
        if self.scan_order == "column_major":
            index = index.reshape(grid).t().reshape(-1)
        return index

    def forward(self, tokens: torch.Tensor, conds: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """Teacher-forced outputs ``(N, L, width)`` for every patch, in grid order."""
        order = self.order(grid, tokens.device)
        x = self.patch_embed(tokens[:, order]) + self.positions(grid, tokens.device)[order]
        h = self.transform(torch.cat([self.embed_conds(conds), x[:, :-1]], dim=1))
        return h[:, self.num_conds - 1:][:, torch.argsort(order)]

    def new_caches(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]

    def start(self, conds: list[torch.Tensor], caches: list[KVCache]) -> torch.Tensor:
        """Feed the condition tokens; returns the output ``(N, width)`` for the first patch in scan order."""
        return self.transform(self.embed_conds(conds), caches)[:, -1]

    def step(self, token: torch.Tensor, index: int, grid: tuple[int, int], caches: list[KVCache]) -> torch.Tensor:
        """Feed the patch features ``(N, p*p*PIXEL_FEATURES)`` at grid ``index``; returns the output for the next patch in scan order."""
        x = self.patch_embed(token) + self.positions(grid, token.device)[index]
        return self.transform(x[:, None], caches)[:, 0]
