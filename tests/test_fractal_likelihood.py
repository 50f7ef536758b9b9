"""FractalGen likelihood: an all-AR hierarchy is a normalised distribution; the KV cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from fractalmidi.data.roll import PIANO_LOWEST
from fractalmidi.models import build
from fractalmidi.models.fractal.head import HOLD, bin_velocities, velocity_bins
from fractalmidi.models.fractal.patches import patchify

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def planes(velocity: torch.Tensor) -> torch.Tensor:
    """Velocity rolls ``(B, H, W)`` in [0, 1] -> planes with an onset where each pitch starts sounding."""
    sounding = velocity > 0
    before = torch.nn.functional.pad(sounding[..., :-1], (1, 0))
    return torch.stack([velocity, (sounding & ~before).float()], 1)

MICRO = {"num_pitches": 4, "patch_sizes": (2, 1), "generators": ("ar", "ar"), "widths": (16, 16),
         "depths": (1, 1), "heads": (2, 2), "head_width": 16, "num_bins": 2, "num_iter_list": (1, 1),
         "note_states": False}
"""4 pitches x 4 steps, on/off pixels: 2**16 rolls, few enough to enumerate."""
MICRO3 = {**MICRO, "patch_sizes": (4, 2, 1), "generators": ("ar", "ar", "ar"), "widths": (16, 16, 16),
          "depths": (1, 1, 1), "heads": (2, 2, 2), "num_iter_list": (1, 1, 1)}
"""Three levels: 4x4 patches of 2x2 patches of pixels."""


def all_rolls(pitches: int, steps: int, states: int = 2) -> torch.Tensor:
    """Every roll of ``states`` pixel states as planes: 0 silence, 1 sounding without onset (hold),
    2 onset (``states`` = 2 is on/off)."""
    pixels = pitches * steps
    codes = torch.arange(states**pixels)
    digits = (codes[:, None] // states ** torch.arange(pixels)) % states
    velocity = (digits > 0).float().reshape(-1, pitches, steps)
    onset = (digits == HOLD + 1).float().reshape(-1, pitches, steps)
    return torch.stack([velocity, onset], 1)


def randomise(model: torch.nn.Module, std: float = 0.5) -> None:
    """Every weight random (an untrained head is uniform, which would hide normalisation bugs)."""
    for param in model.parameters():
        torch.nn.init.normal_(param, std=std)


@pytest.mark.parametrize(("scan_order", "pitches", "config"),
                         [("row_major", 4, MICRO), ("column_major", 2, MICRO), ("row_major", 4, MICRO3),
                          ("column_major", 4, MICRO3)])
def test_exact_likelihood_sums_to_one(scan_order: str, pitches: int, config: dict) -> None:
    """Every roll of ``pitches`` x 4 on/off pixels (2**16 or 2**8 of them) scored exactly."""
    torch.manual_seed(0)
    model = build("fractal-ar-tiny", scan_order=scan_order, **{**config, "num_pitches": pitches}).eval()
    randomise(model)
    rolls = all_rolls(pitches, 4)
    nats = torch.cat([model.nll(chunk)["nats"] for chunk in rolls.split(8192)])
    probs = torch.exp(-nats.double())
    assert model.nll(rolls[:2])["exact"] is True
    assert abs(probs.sum().item() - 1.0) < 1e-4
    # and it is not the uniform distribution
    assert probs.max().item() > 10 * probs.min().item()


@pytest.mark.parametrize(("block", "steps", "config"), [(2, 4, MICRO), (4, 1, MICRO3)])
def test_frame_folded_likelihood_sums_to_one_and_samples_stay_on_its_keys(block: int, steps: int,
                                                                         config: dict) -> None:
    """``frame_block``: a frame's keys from MIDI 21 up become one square block scanned frame by frame;
    all 2**16 rolls over those keys sum to one, and nothing is written outside them."""
    torch.manual_seed(6)
    low, keys = PIANO_LOWEST, block * block
    model = build("fractal-ar-tiny", **{**config, "num_pitches": low + keys, "frame_block": block,
                                        "patch_sizes": (block, *config["patch_sizes"][1:])}).eval()
    randomise(model)
    assert model.length_multiple == 1 and model.modelled_rows == range(low, low + keys)
    band = all_rolls(keys, steps)
    rolls = torch.zeros(band.shape[0], 2, low + keys, steps)
    rolls[:, :, low:] = band
    probs = torch.exp(-torch.cat([model.nll(chunk)["nats"] for chunk in rolls.split(8192)]).double())
    assert abs(probs.sum().item() - 1.0) < 1e-4
    assert probs.max().item() > 10 * probs.min().item()
    canvas = torch.zeros(64, 2, low + keys, 3)
    samples = model.sample(canvas, torch.ones_like(canvas, dtype=torch.bool), temperature=1.0)
    assert samples[:, 0, low:].sum() > 0 and samples[:, 0, :low].sum() == 0
    with pytest.raises(ValueError, match="outside MIDI"):
        model.nll(samples.roll(1, dims=2) + (torch.arange(low + keys) == 0).float()[:, None])


def test_note_state_likelihood_sums_to_one() -> None:
    """Silence / hold / onset pixels: all 3**8 state rolls of 2 pitches x 4 steps, three levels."""
    torch.manual_seed(4)
    config = {**MICRO3, "num_pitches": 2, "patch_sizes": (2, 1), "generators": ("ar", "ar"), "widths": (16, 16),
              "depths": (1, 1), "heads": (2, 2), "num_iter_list": (1, 1), "note_states": True}
    model = build("fractal-ar-tiny", **config).eval()
    randomise(model)
    assert model.pixel_states.count == 3
    rolls = all_rolls(2, 4, states=3)
    probs = torch.exp(-model.nll(rolls)["nats"].double())
    assert abs(probs.sum().item() - 1.0) < 1e-4
    assert probs.max().item() > 10 * probs.min().item()


def test_sampler_matches_exact_likelihood() -> None:
    """Frequencies of 20,000 samples of a micro all-AR model against its exact probabilities."""
    torch.manual_seed(5)
    model = build("fractal-ar-tiny", **{**MICRO, "num_pitches": 2}).eval()
    randomise(model, std=0.7)
    rolls = all_rolls(2, 4)
    probs = torch.exp(-model.nll(rolls)["nats"].double())
    count = 20_000
    canvas = torch.zeros(count, 2, 2, 4)
    samples = model.sample(canvas, torch.ones_like(canvas, dtype=torch.bool),
                           generator=torch.Generator().manual_seed(0),
                           temperature=1.0)
    index = ((samples[:, 0] > 0).long().reshape(count, -1) * 2 ** torch.arange(8)).sum(1)
    freq = torch.bincount(index, minlength=len(rolls)).double() / count
    total_variation = 0.5 * (freq - probs).abs().sum().item()
    assert total_variation < 0.05, total_variation


def test_nll_agrees_with_training_loss_for_all_ar() -> None:
    """All-AR levels score every pixel once, so NLL = pixel cross-entropy x pixels (with every silent
    patch trained: empty_keep < 1 makes the training loss a subsampled estimate)."""
    torch.manual_seed(1)
    model = build("fractal-ar-tiny", empty_keep=1.0).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    x = planes((torch.rand(2, 128, 32) < 0.05).float() * 100 / 127)
    out = model.nll(x)
    _, parts = model.loss(x)
    pixels = 128 * 32
    assert torch.allclose(out["nats"].mean(), parts["pixel"] * pixels, rtol=1e-4)
    assert torch.allclose(out["bits_per_pixel"], out["nats"] / pixels / torch.log(torch.tensor(2.0)))
    assert torch.allclose(out["nats_per_step"], out["nats"] / 32)


def test_mar_nll_is_a_labelled_estimate() -> None:
    torch.manual_seed(2)
    model = build("fractal-tiny").eval()
    x = planes((torch.rand(3, 128, 32) < 0.05).float() * 64 / 127)
    out = model.nll(x, generator=torch.Generator().manual_seed(0))
    assert out["exact"] is False
    assert out["bits_per_pixel"].shape == (3,)
    # an untrained head is uniform over its states: log2(states) bits per pixel whatever the weights
    expected = torch.log2(torch.tensor(float(model.pixel_states.count)))
    assert torch.allclose(out["bits_per_pixel"], expected.expand(3), atol=1e-3)


@pytest.mark.parametrize("scan_order", ["row_major", "column_major"])
def test_ar_kv_cache_matches_full_pass(scan_order: str) -> None:
    """Teacher-forced logits, incremental with the KV cache vs one causal pass, at two levels."""
    torch.manual_seed(3)
    model = build("fractal-ar-tiny", scan_order=scan_order).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    # level 0 on a 128 x 64 roll: a 8 x 4 grid of 16x16 patches
    roll = (torch.rand(2, 128, 64) < 0.1).long() * 40
    level = model.levels[0]
    tokens, grid = model.pixel_states.embed_input(patchify(roll, 16)), (8, 4)
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
    pixels = model.pixel_states.embed_input((torch.rand(5, 16, 1) < 0.3).long() * HOLD)
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
    velocities = torch.arange(128)
    bins = velocity_bins(velocities, num_bins)
    assert bins[0] == 0 and (bins[1:] >= 1).all() and bins.max() == num_bins - 1
    assert (bins.diff() >= 0).all()
    assert torch.equal(velocity_bins(bin_velocities(torch.arange(num_bins), num_bins), num_bins),
                       torch.arange(num_bins))
    if num_bins == 128:
        assert torch.equal(bin_velocities(bins, num_bins), velocities)


def test_pixel_states_of_planes() -> None:
    """Silence, hold, onset with its velocity bin; a held frame's own velocity is ignored."""
    model = build("fractal-tiny", num_bins=8)
    ps = model.pixel_states
    x = torch.zeros(1, 2, 128, 16)
    x[0, 0, 60, 2:6] = 100 / 127
    x[0, 1, 60, 2] = 1.0
    x[0, 0, 60, 6:8] = 30 / 127  # a re-strike, softer
    x[0, 1, 60, 6] = 1.0
    states = ps.from_planes(x)[0, 60]
    onset_loud, onset_soft = 1 + velocity_bins(torch.tensor(100), 8), 1 + velocity_bins(torch.tensor(30), 8)
    assert states.tolist()[:9] == [0, 0, int(onset_loud), HOLD, HOLD, HOLD, int(onset_soft), HOLD, 0]
    assert ps.onset(states).sum() == 2 and ps.sounding(states).sum() == 6
