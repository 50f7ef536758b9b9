"""FractalGen likelihood: an all-AR hierarchy is a normalised distribution; the KV cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from fractalmidi.models import build
from fractalmidi.models.fractal.head import bin_values, velocity_bins
from fractalmidi.models.fractal.patches import patchify

pytestmark = pytest.mark.usefixtures("torch_single_thread")

MICRO = {"num_pitches": 4, "patch_sizes": (2, 1), "generators": ("ar", "ar"), "widths": (16, 16),
         "depths": (1, 1), "heads": (2, 2), "head_width": 16, "num_bins": 2, "num_iter_list": (1, 1)}
"""4 pitches x 4 steps, on/off pixels: 2**16 rolls, few enough to enumerate."""


def all_rolls(pitches: int, steps: int) -> torch.Tensor:
    pixels = pitches * steps
    codes = torch.arange(2**pixels)
    bits = (codes[:, None] >> torch.arange(pixels)) & 1
    return bits.float().reshape(-1, 1, pitches, steps)


@pytest.mark.parametrize(("scan_order", "pitches"), [("row_major", 4), ("column_major", 2)])
def test_exact_likelihood_sums_to_one(scan_order: str, pitches: int) -> None:
    """Every roll of ``pitches`` x 4 on/off pixels (2**16 or 2**8 of them) scored exactly."""
    torch.manual_seed(0)
    model = build("fractal-ar-tiny", scan_order=scan_order, **{**MICRO, "num_pitches": pitches}).eval()
    # the head starts at the uniform distribution (zero last layer): make it informative
    torch.nn.init.normal_(model.head.out.weight, std=2.0)
    torch.nn.init.normal_(model.head.out.bias, std=1.0)
    rolls = all_rolls(pitches, 4)
    nats = torch.cat([model.nll(chunk)["nats"] for chunk in rolls.split(8192)])
    probs = torch.exp(-nats.double())
    assert model.nll(rolls[:2])["exact"] is True
    assert abs(probs.sum().item() - 1.0) < 1e-4
    # and it is not the uniform distribution
    assert probs.max().item() > 10 / len(rolls)


def test_nll_agrees_with_training_loss_for_all_ar() -> None:
    """All-AR levels score every pixel once, so NLL = pixel cross-entropy x pixels."""
    torch.manual_seed(1)
    model = build("fractal-ar-tiny").eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    x = (torch.rand(2, 1, 128, 32) < 0.05).float() * 100 / 127
    out = model.nll(x)
    _, parts = model.loss(x)
    pixels = 128 * 32
    assert torch.allclose(out["nats"].mean(), parts["pixel"] * pixels, rtol=1e-4)
    assert torch.allclose(out["bits_per_pixel"], out["nats"] / pixels / torch.log(torch.tensor(2.0)))
    assert torch.allclose(out["nats_per_step"], out["nats"] / 32)


def test_mar_nll_is_a_labelled_estimate() -> None:
    torch.manual_seed(2)
    model = build("fractal-tiny").eval()
    x = (torch.rand(3, 1, 128, 32) < 0.05).float() * 64 / 127
    out = model.nll(x, generator=torch.Generator().manual_seed(0))
    assert out["exact"] is False
    assert out["bits_per_pixel"].shape == (3,)
    # an untrained head is uniform over 128 bins: exactly 7 bits per pixel whatever the weights
    assert torch.allclose(out["bits_per_pixel"], torch.full((3,), 7.0), atol=1e-3)


@pytest.mark.parametrize("scan_order", ["row_major", "column_major"])
def test_ar_kv_cache_matches_full_pass(scan_order: str) -> None:
    """Teacher-forced logits, incremental with the KV cache vs one causal pass, at two levels."""
    torch.manual_seed(3)
    model = build("fractal-ar-tiny", scan_order=scan_order).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    # level 0 on a 128 x 64 roll: a 8 x 4 grid of 16x16 patches
    roll = (torch.rand(2, 128, 64) < 0.1).float() * 0.7
    level = model.levels[0]
    tokens, grid = patchify(roll, 16), (8, 4)
    conds = [model.start.expand(2, -1)]
    full = level(tokens, conds, grid)
    caches = level.new_caches()
    cached = torch.empty_like(full)
    order = level.order(grid, roll.device).tolist()
    out = level.start(conds, caches)
    for i, pos in enumerate(order):
        cached[:, pos] = out
        if i + 1 < len(order):
            out = level.step(tokens[:, pos], pos, grid, caches)
    assert torch.allclose(cached, full, atol=1e-5)
    assert order != sorted(order) if scan_order == "column_major" else order == sorted(order)

    # the pixel level over a 4x4 patch, conditioned on level-1 outputs, through the head
    pixel_level = model.levels[2]
    pixels = (torch.rand(5, 16, 1) < 0.3).float()
    cond = [torch.randn(5, model.levels[1].width)]
    full_logits = model.head([pixel_level(pixels, cond, (4, 4)).reshape(-1, pixel_level.width)])
    caches = pixel_level.new_caches()
    out = pixel_level.start(cond, caches)
    outs = torch.empty(5, 16, pixel_level.width)
    order = pixel_level.order((4, 4), pixels.device).tolist()
    for i, pos in enumerate(order):
        outs[:, pos] = out
        if i + 1 < len(order):
            out = pixel_level.step(pixels[:, pos], pos, (4, 4), caches)
    cached_logits = model.head([outs.reshape(-1, pixel_level.width)])
    assert torch.allclose(cached_logits, full_logits, atol=1e-5)



@pytest.mark.parametrize("num_bins", [2, 8, 128])
def test_velocity_bins_round_trip(num_bins: int) -> None:
    """Bin 0 is exactly silence, every velocity 1..127 lands in a note bin, decoding is stable."""
    velocities = torch.arange(128) / 127
    bins = velocity_bins(velocities, num_bins)
    assert bins[0] == 0 and (bins[1:] >= 1).all() and bins.max() == num_bins - 1
    assert (bins.diff() >= 0).all()
    assert torch.equal(velocity_bins(bin_values(torch.arange(num_bins), num_bins), num_bins), torch.arange(num_bins))
    if num_bins == 128:
        assert torch.equal(bin_values(bins, num_bins), velocities)
