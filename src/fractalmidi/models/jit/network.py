"""The JiT network: a plain transformer on large piano-roll patches that predicts the clean roll.

Pixels -> bottleneck patch embedding -> fixed 2-D sin-cos positions (built for whatever T
comes in) -> AdaLN-Zero blocks (RMSNorm, qk-norm attention, SwiGLU) conditioned on the
time and label embeddings, optionally with label tokens prepended in the middle of the stack
("in-context" conditioning) -> zero-initialised final layer -> pixels. The objective and
sampler live in :mod:`fractalmidi.models.jit.denoiser`.
"""

from __future__ import annotations

import torch
from torch import nn

from fractalmidi.models.base import NUM_PITCHES
from fractalmidi.models.layers import (
    EMBED_INIT_STD,
    Attention,
    LabelEmbedder,
    SinCosTable,
    SwiGLU,
    TimestepEmbedder,
    call_block,
    init_weights,
)

NORM_EPS = 1e-6
SWIGLU_WIDTH_FACTOR = 2.0 / 3.0
"""SwiGLU has three matrices instead of two: its gated width is 2/3 of ``mlp_ratio * dim``
so the feed-forward costs the same as a GELU MLP of that ratio."""


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: per-sample affine transform of normalised tokens ``(B, L, D)`` by ``(B, D)`` vectors."""
    return x * (1 + scale[:, None]) + shift[:, None]


class BottleneckPatchEmbed(nn.Module):
    """``p x p`` patches -> a narrow linear bottleneck -> the transformer width.

    The bottleneck keeps the embedding cheap for large patches (a 16 x 16 patch of 3 channels
    is 768 numbers) and, as in JiT, acts as a low-rank projection of the pixels.
    """

    def __init__(self, in_channels: int, patch_size: int, bottleneck_dim: int, dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, bottleneck_dim, patch_size, stride=patch_size, bias=False)
        self.expand = nn.Conv2d(bottleneck_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> tokens ``(B, H/p * W/p, dim)``, row-major (pitch rows, time columns)."""
        return self.expand(self.reduce(x)).flatten(2).transpose(1, 2)

    def reset_parameters(self) -> None:
        # initialise like the linear layers they are (a conv over one patch)
        for conv in (self.reduce, self.expand):
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(self.expand.bias)


class AdaLNBlock(nn.Module):
    """Transformer block whose norms are modulated (shift, scale) and whose branches are gated
    by vectors computed from the condition; the modulation starts at zero (AdaLN-Zero), so every
    block starts as the identity."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads, qk_norm=True, attn_drop=attn_drop, proj_drop=proj_drop)
        self.norm2 = nn.RMSNorm(dim, eps=NORM_EPS)
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio * SWIGLU_WIDTH_FACTOR), proj_drop)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """Modulated RMSNorm and a linear map from each token to its ``p x p`` output pixels, and another to its
    own ``token_channels`` outputs. Those read the features without training them (a probe): an auxiliary
    output, e.g. a velocity distribution with its irreducible ~2 nats, must not pull the denoiser's capacity
    its way."""

    def __init__(self, dim: int, patch_size: int, out_channels: int, token_channels: int = 0) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=NORM_EPS)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.token_linear = nn.Linear(dim, token_channels) if token_channels else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        h = modulate(self.norm(x), shift, scale)
        return self.linear(h), None if self.token_linear is None else self.token_linear(h.detach())


class JiTNet(nn.Module):
    """Predicts the clean roll from ``(B, in_channels, 128, T)`` inputs, times ``t`` and labels.

    ``T`` may be any positive multiple of ``patch_size``: positions are computed per call.
    ``in_context_len > 0`` prepends that many label tokens before block ``in_context_start``
    (they are dropped again before the final layer). ``grad_checkpointing`` recomputes each
    block's activations in the backward pass while training (less memory, same gradients).
    ``token_channels`` are outputs per token, not per pixel (one set per ``p x p`` patch: a velocity
    distribution costs a token's worth of outputs, not a pixel's).
    """

    def __init__(
        self,
        *,
        patch_size: int = 16,
        in_channels: int = 3,
        out_channels: int = 1,
        token_channels: int = 0,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        bottleneck_dim: int = 128,
        num_classes: int = 1,
        label_dropout: float = 0.1,
        in_context_len: int = 0,
        in_context_start: int = 0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        if NUM_PITCHES % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide the {NUM_PITCHES} pitches")
        if in_context_len and not 0 <= in_context_start < depth:
            raise ValueError(f"in_context_start {in_context_start} is not a block index in [0, {depth})")
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.dim = dim
        self.in_context_start = in_context_start
        self.patch_embed = BottleneckPatchEmbed(in_channels, patch_size, bottleneck_dim, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.y_embedder = LabelEmbedder(num_classes, dim, label_dropout)
        self.in_context_pos = nn.Parameter(torch.zeros(in_context_len, dim)) if in_context_len else None
        # dropout only in the middle half of the stack, as in JiT
        middle = range(depth // 4, depth * 3 // 4)
        self.blocks = nn.ModuleList(
            AdaLNBlock(dim, num_heads, mlp_ratio, attn_drop=attn_drop if i in middle else 0.0,
                       proj_drop=proj_drop if i in middle else 0.0)
            for i in range(depth)
        )
        self.final_layer = FinalLayer(dim, patch_size, out_channels, token_channels)
        self._sincos = SinCosTable(dim)
        self.reset_parameters()

    @property
    def null_label(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.y_embedder.null_label

    def reset_parameters(self) -> None:
        self.apply(init_weights)
        self.patch_embed.reset_parameters()
        nn.init.normal_(self.y_embedder.table.weight, std=EMBED_INIT_STD)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=EMBED_INIT_STD)
        if self.in_context_pos is not None:
            nn.init.normal_(self.in_context_pos, std=EMBED_INIT_STD)
        zeroed = [block.modulation[-1] for block in self.blocks]
        zeroed += [self.final_layer.modulation[-1], self.final_layer.linear]
        zeroed += [self.final_layer.token_linear] if self.final_layer.token_linear is not None else []
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None, col_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, C, 128, T)``, ``t`` ``(B,)`` in [0, 1], ``labels`` ``(B,)`` long -> pixels
        ``(B, out_channels, 128, T)`` and token outputs ``(B, token_channels, 128 / p, T / p)``.

        ``drop_labels`` (default: in training mode) replaces labels by the null label at the
        embedder's dropout rate. ``col_offset``: the roll's first token column takes the time
        position ``col_offset`` (training draws it, so longer rolls meet positions seen in training).
        """
        b, _, height, width = x.shape
        p = self.patch_size
        rows, cols = height // p, width // p
        y = self.y_embedder(labels, drop=drop_labels)
        c = self.t_embedder(t) + y
        tokens = self.patch_embed(x) + self._sincos(rows, cols, x.device, x.dtype, col_offset)
        prefix = 0
        checkpointing = self.grad_checkpointing and self.training
        for i, block in enumerate(self.blocks):
            if self.in_context_pos is not None and i == self.in_context_start:
                prefix = self.in_context_pos.shape[0]
                tokens = torch.cat([y[:, None] + self.in_context_pos, tokens], dim=1)
            tokens = call_block(block, tokens, c, checkpointing=checkpointing)
        out, per_token = self.final_layer(tokens[:, prefix:], c)
        per_token = x.new_zeros(b, 0, rows, cols) if per_token is None else per_token.transpose(1, 2).reshape(
            b, -1, rows, cols)
        # (B, rows*cols, p*p*out) -> (B, out, rows*p, cols*p)
        out = out.view(b, rows, cols, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, self.out_channels, rows * p, cols * p), per_token
