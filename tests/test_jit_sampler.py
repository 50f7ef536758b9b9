"""JiT sampler: exact on a stand-in network, guidance by its formula, known pixels kept bit-exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fractalmidi.errors import UserError
from fractalmidi.models import build
from fractalmidi.models.jit.denoiser import to_signed
from fractalmidi.models.jit.masks import MASK_KINDS, make_mask

T = 64


class ConstantNet(nn.Module):
    """Stands in for the network: predicts ``cond`` for real labels and ``uncond`` for the null label."""

    null_label = 1

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor) -> None:
        super().__init__()
        self.cond, self.uncond = cond, uncond
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None) -> torch.Tensor:
        self.calls += 1
        null = (labels == self.null_label).view(-1, 1, 1, 1)
        return torch.where(null, self.uncond, self.cond).expand(x.shape[0], 1, *x.shape[2:]).clone()


def _target(seed: int, batch: int = 2) -> torch.Tensor:
    """A roll in [0, 1] with exact 0s and 1s and values in between."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 1, 128, T, generator=gen) * 1.4 - 0.2).clamp(0, 1)


def _model_with(net: nn.Module) -> nn.Module:
    model = build("jit-tiny")
    model.net = net
    return model


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 5, 30])
@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_sampler_returns_the_fixed_prediction(sampler: str, steps: int, cfg: float) -> None:
    target = _target(0)
    x_star = to_signed(target[:1])
    net = ConstantNet(x_star, x_star)
    model = _model_with(net)
    canvas = torch.zeros_like(target)
    mask = torch.ones_like(target, dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    out = model.sample(canvas, mask, generator=gen, sampler=sampler, steps=steps, cfg=cfg, cfg_interval=(0.0, 1.0),
                       silence_below=0.0)
    torch.testing.assert_close(out, target[:1].expand_as(out), rtol=0, atol=1e-5)
    evaluations = steps if sampler == "euler" else 2 * steps - 1  # Heun's last step is one evaluation
    assert net.calls == evaluations


def test_guidance_follows_its_formula_inside_the_interval() -> None:
    cond, uncond = to_signed(_target(1)[:1]) * 0.3, to_signed(_target(2)[:1]) * 0.3
    scale = 2.5
    canvas = torch.zeros(1, 1, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    # the last step is at t = 0.75, inside (0.5, 1): guided
    out = _model_with(ConstantNet(cond, uncond)).sample(canvas, mask, steps=4, cfg=scale, cfg_interval=(0.5, 1.0),
                                                        silence_below=0.0)
    expected = ((uncond + scale * (cond - uncond) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # an interval that excludes the last step's time: the conditional prediction alone
    out = _model_with(ConstantNet(cond, uncond)).sample(canvas, mask, steps=4, cfg=scale, cfg_interval=(0.0, 0.5),
                                                        silence_below=0.0)
    torch.testing.assert_close(out, ((cond + 1) / 2).clamp(0, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_known_pixels_come_back_bit_exact(kind: str) -> None:
    torch.manual_seed(0)
    model = build("jit-tiny")
    with torch.no_grad():  # a non-trivial network: the zero-initialised output layer gets weights
        model.net.final_layer.linear.weight.normal_(std=0.5)
    gen = torch.Generator().manual_seed(3)
    mask = torch.stack([make_mask(kind, T, patch_size=model.patch_size, generator=gen) for _ in range(2)])
    canvas = torch.rand(2, 1, 128, T, generator=gen)
    result, frames = model.sample(canvas, mask, generator=gen, steps=3, sampler="heun", cfg=2.0,
                                  return_steps=True)
    assert result.shape == canvas.shape
    assert torch.equal(result[~mask], canvas[~mask])
    assert len(frames) == 3 and torch.equal(frames[-1], result)
    for frame in frames:
        assert torch.equal(frame[~mask], canvas[~mask])
        assert frame.min() >= 0 and frame.max() <= 1
    if kind != "none":
        assert (~mask).any() and mask.any()


class EchoNet(nn.Module):
    """Predicts its noisy input as clean: the velocity is zero, so the state never moves."""

    null_label = 1

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None) -> torch.Tensor:
        return x[:, :1].clone()


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_temperature_scales_the_starting_noise(sampler: str) -> None:
    model = _model_with(EchoNet())
    canvas = torch.zeros(1, 1, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    out = model.sample(canvas, mask, generator=torch.Generator().manual_seed(4), sampler=sampler, steps=6,
                       temperature=0.3, silence_below=0.0)
    noise = torch.randn(canvas.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, ((0.3 * model.noise_scale * noise + 1) / 2).clamp(0, 1), rtol=0, atol=1e-6)


def test_faint_generated_values_become_silence() -> None:
    target = _target(5)
    x_star = to_signed(target[:1])
    model = _model_with(ConstantNet(x_star, x_star))
    canvas = torch.rand(1, 1, 128, T) * 0.05  # faint known pixels stay as they are
    mask = torch.zeros_like(canvas, dtype=torch.bool)
    mask[..., T // 2 :] = True
    out = model.sample(canvas, mask, steps=3, silence_below=0.2)
    expected = torch.where(target[:1] < 0.2, torch.zeros_like(canvas), target[:1])
    torch.testing.assert_close(out[mask], expected[mask], rtol=0, atol=1e-5)
    assert torch.equal(out[~mask], canvas[~mask])


def test_bad_options_are_named() -> None:
    model = build("jit-tiny")
    canvas = torch.zeros(1, 1, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    with pytest.raises(UserError, match="unknown JiT sample options.*accepted"):
        model.sample(canvas, mask, num_iter=3)
    with pytest.raises(UserError, match="sampler"):
        model.sample(canvas, mask, sampler="rk4")
    with pytest.raises(ValueError, match="multiple of 16"):
        model.sample(torch.zeros(1, 1, 128, 40), torch.ones(1, 1, 128, 40, dtype=torch.bool))
