"""Transformer layers shared by every family: written once, used by FractalGen and JiT.

Attention goes through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels
on GPUs) and supports an incremental KV cache for autoregressive sampling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


class KVCache:
    """Keys and values of the tokens seen so far, in a buffer that grows by doubling.

    Shapes are ``(B, heads, L, head_dim)``; ``append`` returns views of everything cached.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = k.shape[2]
        if self.k is None or self.length + new > self.k.shape[2]:
            capacity = max(2 * (self.length + new), 16)
            grown_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            grown_v = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            if self.k is not None:
                grown_k[:, :, : self.length] = self.k[:, :, : self.length]
                grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length : self.length + new] = k
        self.v[:, :, self.length : self.length + new] = v
        self.length += new
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class Attention(nn.Module):
    """Multi-head self-attention with optional qk-norm, causal masking and a KV cache."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, qk_norm: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm: nn.Module = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, *, causal: bool = False, cache: KVCache | None = None) -> torch.Tensor:
        """``x`` is ``(B, L, dim)``. With ``cache``, ``x`` holds only the new tokens, which attend
        to every cached token and (when ``causal``) to the earlier new ones."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)
        mask = None
        is_causal = causal and past == 0 and n > 1
        if causal and past > 0 and n > 1:
            # new query i sits at absolute position past + i: it sees keys 0 .. past + i
            rows = torch.arange(n, device=x.device)[:, None] + past
            mask = torch.arange(past + n, device=x.device)[None, :] <= rows
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, -1)))


class Mlp(nn.Module):
    """Two-layer GELU feed-forward network."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class SwiGLU(nn.Module):
    """Gated feed-forward ``w3(silu(w1 x) * w2 x)``; ``hidden`` is the gated width."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.drop(self.w3(self.drop(F.silu(gate) * value)))


class Block(nn.Module):
    """Pre-norm transformer block (attention + MLP), plain LayerNorm, no conditioning."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, qk_norm: bool = False,
                 drop: float = 0.0, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, *, causal: bool = False, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=causal, cache=cache)
        return x + self.mlp(self.norm2(x))


def sincos_1d(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(N, dim)`` of (possibly fractional) positions ``(N,)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, dim - emb.shape[-1]))


def sincos_2d(height: int, width: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sin-cos positions ``(height * width, dim)``, row-major, for any grid size.

    Half the channels encode the row (pitch), half the column (time), so nothing limits T.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    return torch.cat([sincos_1d(rows, dim // 2), sincos_1d(cols, dim // 2)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Embeds scalar diffusion times ``t`` (B,) into ``dim`` through sinusoids and an MLP."""

    def __init__(self, dim: int, freq_dim: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sincos_1d(t * self.scale, self.freq_dim))


class LabelEmbedder(nn.Module):
    """Class labels -> vectors, with one extra "null" class used for classifier-free guidance.

    During training each label is replaced by the null class with probability ``dropout``.
    """

    def __init__(self, num_classes: int, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout = dropout
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, labels: torch.Tensor, *, drop: bool | None = None) -> torch.Tensor:
        drop = self.training if drop is None else drop
        if drop and self.dropout > 0:
            dropped = torch.rand(labels.shape, device=labels.device) < self.dropout
            labels = torch.where(dropped, torch.full_like(labels, self.null_label), labels)
        return self.table(labels)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear weights, zero biases, unit norms: apply with ``model.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def call_block(block: nn.Module, *args: Any, checkpointing: bool = False, **kwargs: Any) -> Any:
    """``block(*args, **kwargs)``, under activation checkpointing when ``checkpointing`` and grads are on.

    Checkpointing keeps only the block's inputs and recomputes its activations in the backward
    pass: less memory for about one more forward. Callers pass ``checkpointing`` only while
    training; under ``torch.no_grad`` (sampling, evaluation) nothing is recomputed, so it is off.
    """
    if checkpointing and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False, **kwargs)
    return block(*args, **kwargs)


EMBED_INIT_STD = 0.02
"""Std of learned embeddings (tokens, condition slots, positions) at initialisation."""


def learned_embedding(*shape: int) -> nn.Parameter:
    """A learned embedding of ``shape`` drawn from N(0, EMBED_INIT_STD^2)."""
    return nn.Parameter(torch.randn(*shape) * EMBED_INIT_STD)


class SinCosTable:
    """Fixed 2-D sin-cos positions (:func:`sincos_2d`) of width ``dim``, built once per grid shape,
    device and dtype, then reused: any T works, and repeated calls (sampling steps) cost nothing.

    Tables built under ``torch.inference_mode`` are not kept (they could not join autograd later).
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._tables: dict[tuple[int, int, str, torch.dtype], torch.Tensor] = {}

    def __call__(self, rows: int, cols: int, device: torch.device | str,
                 dtype: torch.dtype = torch.float32, col_offset: int = 0) -> torch.Tensor:
        """Positions ``(rows * cols, dim)``, row-major; ``col_offset``: the first column takes position
        ``col_offset`` (training's position jitter, so longer rolls meet positions seen in training)."""
        key = (rows, cols + col_offset, str(device), dtype)
        table = self._tables.get(key)
        if table is None:
            table = sincos_2d(rows, cols + col_offset, self.dim, device=device).to(dtype)
            if not torch.is_inference_mode_enabled():
                self._tables[key] = table
        if col_offset:
            table = table.view(rows, cols + col_offset, -1)[:, col_offset:].reshape(rows * cols, -1)
        return table
