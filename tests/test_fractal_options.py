"""FractalGen training options: MAR mask ratios, dropout, and subsampled silent patches (empty_keep)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fractalmidi.data.roll import codes_to_planes
from fractalmidi.models import build
from fractalmidi.models.fractal.masking import MASK_RATIO_LOC, MASK_RATIO_SCALE, training_mask

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _sparse_planes(batch: int = 2, length: int = 32, seed: int = 0) -> torch.Tensor:
    """Planes of a few random notes (~2% of pixels): most patches are silent, as in real rolls."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((batch, 128, length)) < 0.02, rng.integers(1, 128, (batch, 128, length)), 0)
    return torch.from_numpy(codes_to_planes(codes.astype(np.uint8)))


def test_training_masks_hide_a_share_drawn_down_to_mask_ratio_min() -> None:
    assert build("fractal-tiny").mask_ratio_min == 0.0
    torch.manual_seed(0)
    length = 32
    shares = training_mask(4000, length, 0.0, torch.device("cpu")).float().mean(1)
    assert shares.min() >= 1 / length and shares.max() == 1.0  # at least one patch hidden, at most all
    assert (shares < 0.7).float().mean() > 0.1  # the old floor of 0.7 is gone
    # a normal around 1 (std 0.25) folded below 1: mean 1 - 0.25 sqrt(2/pi), plus < 1/L from rounding up
    folded = MASK_RATIO_LOC - MASK_RATIO_SCALE * math.sqrt(2 / math.pi)
    assert folded < shares.mean().item() < folded + 1 / length
    floor = training_mask(4000, length, 0.7, torch.device("cpu")).float().mean(1)
    assert floor.min() >= 0.7


def test_dropout_acts_only_while_training() -> None:
    torch.manual_seed(0)
    plain = build("fractal-tiny")
    dropped = build("fractal-tiny", dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    rates = [m.p for m in dropped.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates and set(rates) == {0.5}  # in the levels' blocks and the pixel head
    assert all(m.p == 0 for m in plain.modules() if isinstance(m, torch.nn.Dropout))
    x = _sparse_planes()

    def loss(model: torch.nn.Module) -> float:
        torch.manual_seed(1)  # the same training masks for both
        return model.loss(x)[0].item()

    assert loss(plain.eval()) == loss(dropped.eval())
    assert loss(plain.train()) != loss(dropped.train())


def test_empty_keep_subsamples_silent_patches_while_training_only() -> None:
    with pytest.raises(ValueError, match="empty_keep"):
        build("fractal-tiny", empty_keep=0.0)
    torch.manual_seed(0)
    full = build("fractal-tiny", empty_keep=1.0)
    sub = build("fractal-tiny", empty_keep=0.1)
    sub.load_state_dict(full.state_dict())
    x = _sparse_planes()
    scores = []
    for model in (full, sub):
        torch.manual_seed(3)
        scores.append(model._score(x, None, estimate=False))
    pixels = [sum(t.numel() for t in s["pixel_nll"]) for s in scores]
    assert pixels[1] < 0.5 * pixels[0]  # most silent patches are not passed down
    weights = [torch.cat(s["pixel_weight"]) for s in scores]
    assert set(weights[0].unique().tolist()) == {1.0}
    assert torch.allclose(weights[1].unique(), torch.tensor([1.0, 10.0]))  # kept silent ones stand for ten
    # likelihood estimates see every patch
    nll = [model.nll(x, generator=torch.Generator().manual_seed(0))["nats"] for model in (full, sub)]
    assert torch.equal(nll[0], nll[1])
