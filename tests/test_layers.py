"""Shared layers: the KV cache must not change what attention computes; shared position tables and checks."""

import pytest
import torch

from fractalmidi.models import build
from fractalmidi.models.layers import Attention, KVCache, SinCosTable, sincos_2d


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


def test_sincos_table_builds_each_grid_once_and_keeps_no_inference_tensors() -> None:
    table = SinCosTable(64)
    first = table(8, 16, "cpu")
    assert torch.equal(first, sincos_2d(8, 16, 64)) and table(8, 16, "cpu") is first
    assert torch.equal(table(8, 16, "cpu", torch.bfloat16), first.to(torch.bfloat16))
    with torch.inference_mode():
        inside = table(8, 32, "cpu")
    assert torch.equal(inside, sincos_2d(8, 32, 64))
    outside = table(8, 32, "cpu")  # built again outside inference mode: usable under autograd
    assert outside is not inside and not outside.is_inference()


@pytest.mark.parametrize("preset", ["fractal-tiny", "jit-tiny"])
def test_every_family_checks_canvas_and_mask_alike(preset: str) -> None:
    model = build(preset).eval()
    canvas = torch.zeros(1, 2, 128, 32)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of the canvas' shape \(1, 2, 128, 32\)"):
        model.sample(canvas, torch.ones_like(canvas))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of the canvas' shape \(1, 2, 128, 32\)"):
        model.sample(canvas, torch.ones(1, 1, 128, 32, dtype=torch.bool))  # one plane is not enough
    with pytest.raises(ValueError, match=r"expected rolls \(B, 2, 128, T\), got \(2, 128, 32\)"):
        model.sample(canvas[0], torch.ones_like(canvas[0], dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected rolls \(B, 2, 128, T\), got \(1, 1, 128, 32\)"):
        model.loss(canvas[:, :1])  # velocities alone (the old layout) are refused
    with pytest.raises(ValueError, match="length 20 is not a positive multiple of 16"):
        model.loss(torch.zeros(1, 2, 128, 20))
