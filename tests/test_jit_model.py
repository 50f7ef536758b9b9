"""JiT model contract: any length, presets, and overfitting one real chorale crop."""

from __future__ import annotations

import pytest
import torch

from fractalmidi.data.roll import as_uint8_roll, codes_to_planes
from fractalmidi.models import available, build, preset_defaults

OVERFIT_LENGTH = 128
OVERFIT_BATCH = 8
OVERFIT_MAX_STEPS = 1000
CONTINUE_MAX_STEPS = 1200
OVERFIT_LR = 3e-3
STOP_RATIO = 0.003
CHORALE_VELOCITY = 90


def _f1(pred: torch.Tensor, true: torch.Tensor) -> float:
    hits = (pred & true).sum().item()
    return 2 * hits / (pred.sum().item() + true.sum().item())


@pytest.mark.parametrize("length", [128, 256, 1024])
def test_tiny_runs_at_any_multiple_of_the_patch(chorale_crop, torch_single_thread, length: int) -> None:
    torch.manual_seed(0)
    model = build("jit-tiny")
    x = chorale_crop(length)
    total, parts = model.loss(x.repeat(2, 1, 1, 1))
    total.backward()
    assert torch.isfinite(total) and set(parts) == {"v_loss", "x_mse", "velocity_ce"}
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[..., length // 2 :] = True  # continue the first half
    out = model.sample(x, mask, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 2, 128, length)
    assert torch.equal(out[..., : length // 2], x[..., : length // 2])
    assert 0 <= out.min() and out.max() <= 1
    assert set(out[:, 1].unique().tolist()) <= {0.0, 1.0} and torch.all(out[:, 0][out[:, 1] > 0] > 0)


def test_contract_properties_and_presets() -> None:
    assert {"jit-tiny", "jit-128x128", "jit-B", "jit-L"} <= set(available())
    assert preset_defaults("jit-B")["depth"] == 12 and preset_defaults("jit-B")["dim"] == 768
    assert preset_defaults("jit-128x128")["patch_size"] == 16
    model = build("jit-tiny", patch_size=8, ema_decays=(0.9,))
    assert model.family == "jit" and not model.has_likelihood
    assert model.length_multiple == 8 and model.ema_decays == (0.9,)
    assert set(model.sample_defaults) == {"steps", "sampler", "cfg", "cfg_interval", "start_noise", "silence_below",
                                          "onset_above", "max_voices", "capped_silence_below"}
    with pytest.raises(NotImplementedError):
        model.nll(torch.zeros(1, 2, 128, 16))
    with pytest.raises(ValueError, match="multiple of 8"):
        model.check_length(20)
    assert sum(count for _, count in model.parameter_table()) == sum(p.numel() for p in model.parameters())
    # inputs: 3 noisy channels (sounding, onset, velocity), the 3 known ones and the mask; out: 3 channels.
    # A zero-initialised output layer: a fresh network predicts 0 (mid-grey in [-1, 1]) everywhere
    out, tokens = model.net(torch.randn(2, 7, 128, 32), torch.rand(2), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, 3, 128, 32) and not out.any()
    # and per 4 x 4 token the logits of its velocity bins: uniform
    assert tokens.shape == (2, model.velocity_bins, 16, 4) and not tokens.any()


def _overfit(model: torch.nn.Module, batch: torch.Tensor, max_steps: int = OVERFIT_MAX_STEPS) -> list[float]:
    """AdamW on one fixed batch until the v-loss is under STOP_RATIO of its start (or ``max_steps``); the
    velocity bins' cross-entropy, which one piece's single velocity sends to 0 at once, does not count."""
    opt = torch.optim.AdamW(model.parameters(), lr=OVERFIT_LR, betas=(0.9, 0.95), weight_decay=0.0)
    losses: list[float] = []
    for _ in range(max_steps):
        total, parts = model.loss(batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(parts["v_loss"].item())
        if len(losses) >= 100 and sum(losses[-20:]) / 20 < STOP_RATIO * sum(losses[:10]) / 10:
            break
    return losses


@pytest.mark.slow
@pytest.mark.data
def test_overfits_one_chorale_crop_and_samples_it_back(chorale_crop, torch_single_thread) -> None:
    torch.manual_seed(0)
    x = chorale_crop(OVERFIT_LENGTH)
    # one memorised crop is anchored by its absolute positions: no position jitter (which makes them vary)
    model = build("jit-tiny", mask_probs={"none": 1.0}, position_jitter=0)
    losses = _overfit(model, x.expand(OVERFIT_BATCH, -1, -1, -1))
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last <= 0.1 * first, f"loss fell from {first:.3f} to {last:.3f} in {len(losses)} steps"

    canvas = torch.zeros(2, 2, 128, OVERFIT_LENGTH)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    notes, onsets = x[0, 0] > 0, x[0, 1] > 0
    for sampler in ("euler", "heun"):  # from the training noise (the preset's 1.2x is a taste for minutes-old models)
        out = model.sample(canvas, mask, sampler=sampler, steps=10, start_noise=1.0,
                           generator=torch.Generator().manual_seed(1))
        for roll in out:
            played = roll[0] > 0
            assert _f1(played, notes) >= 0.9, (sampler, _f1(played, notes))
            assert _f1(roll[1] > 0, onsets) >= 0.9, (sampler, _f1(roll[1] > 0, onsets))  # where notes start
            velocity = (roll[0][played & notes] * 127).round()
            assert (velocity - CHORALE_VELOCITY).abs().le(8).float().mean() >= 0.9, velocity.unique()


@pytest.mark.slow
@pytest.mark.data
def test_one_checkpoint_continues_each_prefix_its_own_way(chorale_crop, torch_single_thread) -> None:
    """Two pieces (a chorale crop and its time reversal), trained with prefix masks: the known
    canvas alone tells the model which piece to continue."""
    torch.manual_seed(0)
    crop = chorale_crop(OVERFIT_LENGTH)
    # the time reversal of its notes: velocities reversed, notes start where the reversed ones sound
    reversed_notes = torch.from_numpy(codes_to_planes(as_uint8_roll(crop[0, :1].flip(-1))))[None]
    pieces = torch.cat([crop, reversed_notes])
    model = build("jit-tiny", mask_probs={"prefix": 1.0}, position_jitter=0)
    _overfit(model, pieces.repeat(OVERFIT_BATCH // 2, 1, 1, 1), max_steps=CONTINUE_MAX_STEPS)
    keep = OVERFIT_LENGTH // 2
    mask = torch.zeros_like(pieces, dtype=torch.bool)
    mask[..., keep:] = True
    out = model.sample(pieces, mask, steps=10, start_noise=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out[..., :keep], pieces[..., :keep])
    notes, new = pieces[:, 0, :, keep:] > 0, out[:, 0, :, keep:] > 0
    for i in range(2):
        assert _f1(new[i], notes[i]) >= 0.9, (i, _f1(new[i], notes[i]))
        assert _f1(new[i], notes[1 - i]) < 0.5  # not the other piece's continuation
