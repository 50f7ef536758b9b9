"""What every hierarchy level shares: patch and condition embeddings, positions, a transformer.

A level sees a grid of patches of one region (the whole roll at level 0, a parent patch
below) plus the condition vectors its parent produced for that region, prepended as tokens.

Each level kind (MAR, AR) owns how it is trained and how it fills a region when sampling; the
sampler (:mod:`.sampling`) reaches it only through :meth:`LevelNet.teacher_forced`,
:meth:`LevelNet.fill` and the :class:`RegionFill` it hands over.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import torch
from torch import nn

from fractalmidi.models.fractal.head import PIXEL_FEATURES
from fractalmidi.models.layers import Block, KVCache, SinCosTable, call_block, learned_embedding


class RegionFill(Protocol):
    """What a level needs from the sampler while it fills one region (the sampler owns the rest)."""

    num_iter: int
    """MAR iterations at this level (AR levels take one step per patch)."""
    top: bool
    """Whether this is the top level (a MAR top level ramps the guidance scale)."""
    generator: torch.Generator | None

    def embed(self, states: torch.Tensor) -> torch.Tensor:
        """Pixel features of patch states ``(N, L, p*p)``, doubled for guidance."""

    def double(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` repeated for the unconditional half when guided."""

    def take(self, conds: list[torch.Tensor], index: torch.Tensor | slice) -> list[torch.Tensor]:
        """Rows ``index`` of per-patch conditions, in both guidance halves."""

    def children(self, patches: torch.Tensor, generate: torch.Tensor, conds: list[torch.Tensor],
                 cfg: float, where: torch.Tensor) -> torch.Tensor:
        """Content ``(n, p*p)`` of ``n`` patches from the levels below (known pixels kept); ``where`` ``(n,)``:
        each patch's flat index into the ``(N, L)`` patches being filled (so per-pixel biases follow it)."""


class LevelNet(nn.Module):
    """Transformer over ``num_conds`` condition tokens followed by the patch tokens of a region."""

    kind: ClassVar[str] = ""
    causal: ClassVar[bool] = False
    exact_likelihood: ClassVar[bool] = False
    """Whether :meth:`teacher_forced` scores every patch exactly (else a Monte-Carlo estimate)."""
    child_num_conds: ClassVar[int] = 1
    """How many condition vectors each patch hands down to the next level."""

    def __init__(self, *, patch_size: int, cond_dim: int, num_conds: int, width: int, depth: int,
                 heads: int, mlp_ratio: float = 4.0, fixed_grid: tuple[int, int] | None = None,
                 grad_checkpointing: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        """Recompute each block's activations in the backward pass while training (saves memory)."""
        self.fixed_grid = fixed_grid
        # below the top, every region has the same grid, so positions can also be learned
        self.learned_positions = (learned_embedding(fixed_grid[0] * fixed_grid[1], width)
                                  if fixed_grid is not None else None)
        self.patch_size = patch_size
        self.num_conds = num_conds
        self.width = width
        self.patch_embed = nn.Linear(patch_size * patch_size * PIXEL_FEATURES, width)
        """Embeds the pixel features (:meth:`PixelStates.embed_input`) of one patch."""
        self.cond_proj = nn.Linear(cond_dim, width)
        self.cond_slots = learned_embedding(num_conds, width)
        self.in_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, qk_norm=True, drop=dropout, attn_drop=dropout)
                                    for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.occupancy = nn.Linear(width, 1)
        """Auxiliary logit: does this patch hold any note? (a per-level training signal)."""
        self._sincos = SinCosTable(width)

    def positions(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Positions ``(rows * cols, width)``: sin-cos (built once per grid shape), plus learned ones
        on a fixed grid."""
        fixed = self._sincos(grid[0], grid[1], device)
        if self.learned_positions is None:
            return fixed
        return fixed + self.learned_positions

    def position_shift(self, grid: tuple[int, int], offset: int, device: torch.device) -> torch.Tensor:
        """``(rows * cols, width)``: what moving ``grid`` ``offset`` columns on adds to its sin-cos positions
        (training with ``position_jitter`` shows a level the columns of rolls longer than its crops)."""
        return self._sincos(*grid, device, col_offset=offset) - self._sincos(*grid, device)

    def embed_conds(self, conds: list[torch.Tensor]) -> torch.Tensor:
        """``num_conds`` tensors ``(N, cond_dim)`` -> condition tokens ``(N, num_conds, width)``."""
        return self.cond_proj(torch.stack(conds, dim=1)) + self.cond_slots

    def transform(self, h: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Input norm, the blocks (causal for AR levels), output norm."""
        h = self.in_norm(h)
        checkpointing = self.grad_checkpointing and self.training
        for i, block in enumerate(self.blocks):
            h = call_block(block, h, checkpointing=checkpointing, causal=self.causal,
                           cache=None if caches is None else caches[i])
        return self.out_norm(h)

    def child_conds(self, out: torch.Tensor, grid: tuple[int, int], features: torch.Tensor | None = None,
                    visible: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Condition vectors ``(N, L, width)`` each patch hands to the next level, from the outputs and
        (for levels that use them) the pixel ``features`` of the ``visible`` ``(N, L)`` patches."""
        return [out]

    def teacher_forced(self, features: torch.Tensor, conds: list[torch.Tensor], grid: tuple[int, int], *,
                       estimate: bool, mask_ratio_min: float, generator: torch.Generator | None,
                       marks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs ``(N, L, width)`` for patch features ``(N, L, p*p*PIXEL_FEATURES)`` while training
        (``estimate`` False) or estimating the likelihood, with the patches ``(N, L)`` bool whose
        outputs are scored and each region's estimator weight ``(N,)``. ``marks`` ``(N, L, width)``: added
        to every patch token like its position (the top level's piece edges)."""
        raise NotImplementedError

    def fill(self, current: torch.Tensor, generate: torch.Tensor, conds: list[torch.Tensor],
             grid: tuple[int, int], cfg: float, region: RegionFill,
             frames: list[torch.Tensor] | None, marks: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the patch contents ``(N, L, p*p)`` where ``generate`` is True; ``current`` holds the
        known pixels (0 where generated). Partial canvases go to ``frames`` when it is a list; ``marks``
        as in :meth:`teacher_forced`."""
        raise NotImplementedError
