"""AR level: causal transformer over the patches in a scan order, with a KV cache for sampling.

``row_major`` scans time first (every time span of the lowest pitch band, then the next band);
``column_major`` scans pitch first (every pitch band of a time span, then the next span).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fractalmidi.models.fractal.level import LevelNet, RegionFill
from fractalmidi.models.layers import KVCache

SCAN_ORDERS = ("row_major", "column_major")
MAX_AR_FRAMES = 32
"""An AR top level records at most about this many intermediate canvases."""


class ARLevel(LevelNet):
    """Output for the i-th patch in scan order sees the conditions and patches 0 .. i-1 only."""

    kind: ClassVar[str] = "ar"
    causal: ClassVar[bool] = True
    exact_likelihood: ClassVar[bool] = True
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

    def forward(self, tokens: torch.Tensor, conds: list[torch.Tensor], grid: tuple[int, int],
                marks: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced outputs ``(N, L, width)`` for every patch, in grid order."""
        order = self.order(grid, tokens.device)
        x = self.patch_embed(tokens[:, order]) + self.positions(grid, tokens.device)[order]
        if marks is not None:
            x = x + marks[:, order]
        h = self.transform(torch.cat([self.embed_conds(conds), x[:, :-1]], dim=1))
        return h[:, self.num_conds - 1:][:, torch.argsort(order)]

    def new_caches(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]

    def start(self, conds: list[torch.Tensor], caches: list[KVCache]) -> torch.Tensor:
        """Feed the condition tokens; returns the output ``(N, width)`` for the first patch in scan order."""
        return self.transform(self.embed_conds(conds), caches)[:, -1]

    def step(self, token: torch.Tensor, index: int, grid: tuple[int, int], caches: list[KVCache],
             marks: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the patch features ``(N, p*p*PIXEL_FEATURES)`` at grid ``index`` (and its ``marks`` ``(N, width)``);
        returns the output for the next patch in scan order."""
        x = self.patch_embed(token) + self.positions(grid, token.device)[index]
        if marks is not None:
            x = x + marks
        return self.transform(x[:, None], caches)[:, 0]

    def teacher_forced(self, features: torch.Tensor, conds: list[torch.Tensor], grid: tuple[int, int], *,
                       estimate: bool, mask_ratio_min: float, generator: torch.Generator | None,
                       marks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every patch is scored, each from the ones before it (exact likelihood)."""
        n, length = features.shape[:2]
        chosen = torch.ones(n, length, dtype=torch.bool, device=features.device)
        return self(features, conds, grid, marks), chosen, torch.ones(n, device=features.device)

    def fill(self, current: torch.Tensor, generate: torch.Tensor, conds: list[torch.Tensor],
             grid: tuple[int, int], cfg: float, region: RegionFill,
             frames: list[torch.Tensor] | None, marks: torch.Tensor | None = None) -> torch.Tensor:
        """One patch at a time in scan order (KV cache), up to the last patch any region generates;
        a patch only some regions generate is generated for those only."""
        length = current.shape[1]
        todo = generate.any(-1)
        order = self.order(grid, current.device)
        todo_in_order = todo[:, order]
        any_need, all_need = todo_in_order.any(0).tolist(), todo_in_order.all(0).tolist()
        last = max(i for i, need in enumerate(any_need) if need)
        marks = None if marks is None else region.double(marks)
        caches = self.new_caches()
        out = self.start(conds, caches)
        every = max(1, length // MAX_AR_FRAMES)
        regions = torch.arange(current.shape[0], device=current.device)
        for i, pos in enumerate(order[: last + 1].tolist()):
            if all_need[i]:
                current[:, pos] = region.children(current[:, pos], generate[:, pos], [out], cfg,
                                                  regions * length + pos)
            elif any_need[i]:
                index = todo[:, pos].nonzero().squeeze(1)
                current[index, pos] = region.children(current[index, pos], generate[index, pos],
                                                      region.take([out], index), cfg, index * length + pos)
            if i < last:
                out = self.step(region.embed(current[:, pos]), pos, grid, caches,
                                None if marks is None else marks[:, pos])
            if frames is not None and (i % every == every - 1 or i == last):
                frames.append(current.clone())
        return current
