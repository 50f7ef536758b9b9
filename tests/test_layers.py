"""Shared layers: the KV cache must not change what attention computes."""

import torch

from fractalmidi.models.layers import Attention, KVCache, sincos_2d


def test_kv_cache_matches_full_causal_attention() -> None:
    torch.manual_seed(0)
    attn = Attention(32, 4, qk_norm=True).eval()
    x = torch.randn(2, 11, 32)
    full = attn(x, causal=True)
    cache = KVCache()
    # a prefix of 4 tokens at once, then one token at a time, then a chunk of 3
    parts = [attn(x[:, :4], causal=True, cache=cache)]
    parts += [attn(x[:, i : i + 1], causal=True, cache=cache) for i in range(4, 8)]
    parts.append(attn(x[:, 8:], causal=True, cache=cache))
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_sincos_2d_any_length() -> None:
    pos = sincos_2d(8, 1000, 64)
    assert pos.shape == (8000, 64)
    assert torch.isfinite(pos).all()
    assert not torch.allclose(pos[0], pos[1])
