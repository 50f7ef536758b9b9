"""JiT sampler: exact on a stand-in network, guidance by its formula, whole notes decoded from the
sounding / onset / velocity channels (onsets over one half or at peaks), known pixels kept bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fractalmidi.data.roll import ONSET_BIT, codes_to_planes, roll_to_notes
from fractalmidi.data.texture import AUTO_VOICES
from fractalmidi.errors import UserError
from fractalmidi.models import build
from fractalmidi.models.base import decode_notes
from fractalmidi.models.jit.denoiser import CHANNELS, onsets, to_signed
from fractalmidi.models.jit.masks import MASK_KINDS, make_mask
from fractalmidi.models.jit.options import DEFAULT_ONSET_ABOVE, DEFAULT_SILENCE_BELOW

T = 64


def _no_tokens(x: torch.Tensor) -> torch.Tensor:
    """The network's per-token outputs without velocity bins: none."""
    return x.new_zeros(x.shape[0], 0, x.shape[2] // 4, x.shape[3] // 4)


class ConstantNet(nn.Module):
    """Stands in for the network: predicts ``cond`` for real labels and ``uncond`` for the null label
    (``(1, 3, 128, T)`` network channels in [-1, 1])."""

    null_label = 1

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor) -> None:
        super().__init__()
        self.cond, self.uncond = cond, uncond
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None) -> torch.Tensor:
        self.calls += 1
        assert x.shape[1] == 2 * CHANNELS + 1  # noisy channels, known channels, mask
        null = (labels == self.null_label).view(-1, 1, 1, 1)
        pred = torch.where(null, self.uncond, self.cond).expand(x.shape[0], CHANNELS, *x.shape[2:]).clone()
        return pred, _no_tokens(x)


def _target(seed: int, batch: int = 2) -> torch.Tensor:
    """Planes ``(batch, 2, 128, T)`` of random whole notes: many pitches, touching re-strikes (one-step
    notes struck again at once too), any velocity."""
    rng = np.random.default_rng(seed)
    codes = np.zeros((batch, 128, T), dtype=np.uint8)
    for b in range(batch):
        for pitch in rng.choice(128, size=40, replace=False):
            t = int(rng.integers(0, 4))
            while t < T:
                length = int(rng.integers(1, 7))
                codes[b, pitch, t : t + length] = int(rng.integers(1, 128))
                codes[b, pitch, t] |= ONSET_BIT
                t += length + int(rng.integers(0, 3))  # gap 0: a re-strike right where the last note ends
    return torch.from_numpy(codes_to_planes(codes))


def _channels(planes: torch.Tensor) -> torch.Tensor:
    """By hand: the network's channels (sounding, onset, velocity) in [0, 1] of roll planes."""
    return torch.stack([(planes[:, 0] > 0).float(), planes[:, 1], planes[:, 0]], 1)


def _decoded(unit: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor, silence_below: float) -> torch.Tensor:
    """What the sampler makes of a final x-prediction ``unit`` (channels in [0, 1])."""
    sounding = unit[:, 0] > silence_below
    return decode_notes(canvas, mask, sounding, onsets(unit[:, 1], sounding), unit[:, 2],
                        torch.ones_like(unit[:, 2]))


def _model_with(net: nn.Module) -> nn.Module:
    model = build("jit-tiny", velocity_bins=0, offset_noise=0.0)  # the regressed velocity, plain noise
    model.net = net
    return model


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 5, 30])
@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_sampler_returns_the_fixed_prediction(sampler: str, steps: int, cfg: float) -> None:
    target = _target(0)
    x_star = to_signed(_channels(target[:1]))
    net = ConstantNet(x_star, x_star)
    model = _model_with(net)
    canvas = torch.zeros_like(target)
    mask = torch.ones_like(target, dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    out = model.sample(canvas, mask, generator=gen, sampler=sampler, steps=steps, cfg=cfg, cfg_interval=(0.0, 1.0))
    # channels of whole notes decode to exactly those notes (re-strikes included)
    torch.testing.assert_close(out, target[:1].expand_as(out), rtol=0, atol=1e-6)
    evaluations = steps if sampler == "euler" else 2 * steps - 1  # Heun's last step is one evaluation
    assert net.calls == evaluations


def test_each_note_takes_the_mean_velocity_channel_over_its_pixels() -> None:
    target = _target(6, batch=1)
    unit = _channels(target)
    wobble = torch.rand(unit[:, 2].shape, generator=torch.Generator().manual_seed(2)) * 0.3 - 0.15
    unit[:, 2] = torch.where(unit[:, 0] > 0, (unit[:, 2] + wobble).clamp(0, 1), unit[:, 2])
    x_star = to_signed(unit)
    canvas = torch.zeros_like(target)
    out = _model_with(ConstantNet(x_star, x_star)).sample(canvas, torch.ones_like(canvas, dtype=torch.bool), steps=2)
    assert torch.equal(out[:, 1], target[:, 1]) and torch.equal(out[:, 0] > 0, target[:, 0] > 0)
    notes = roll_to_notes(target[0])
    assert len(notes) > 200
    velocity = (unit[0, 2] * 2 - 1 + 1) / 2  # what the sampler sees after the round trip through [-1, 1]
    for pitch, onset, end in zip(notes.pitch.tolist(), notes.onset.tolist(), notes.end.tolist()):
        mean = velocity[pitch, onset:end].double().mean().item()
        level = out[0, 0, pitch, onset:end]
        assert torch.all(level == level[0]), (pitch, onset)  # one velocity per note ...
        # ... the mean on the 1/127 grid; a sounding note is at least velocity 1
        assert level[0].item() == pytest.approx(min(max(round(mean * 127), 1), 127) / 127, abs=1e-6)


def test_guidance_follows_its_formula_inside_the_interval() -> None:
    cond, uncond = to_signed(_channels(_target(1)[:1])) * 0.3, to_signed(_channels(_target(2)[:1])) * 0.3
    scale = 2.5
    canvas = torch.zeros(1, 2, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    model = _model_with(ConstantNet(cond, uncond))
    known = torch.zeros(1, CHANNELS, 128, T)
    labels = torch.zeros(1, dtype=torch.long)
    z = torch.randn(1, CHANNELS, 128, T)
    guided = uncond + scale * (cond - uncond)
    torch.testing.assert_close(model.predict_x(z, 0.75, known, mask[:, :1], labels, scale, (0.5, 1.0))[0], guided,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(model.predict_x(z, 0.25, known, mask[:, :1], labels, scale, (0.5, 1.0))[0], cond,
                               rtol=0, atol=0)
    # the last step is at t = 0.75, inside (0.5, 1): guided
    out = model.sample(canvas, mask, steps=4, cfg=scale, cfg_interval=(0.5, 1.0), silence_below=0.2)
    expected = _decoded(((guided + 1) / 2).clamp(0, 1), canvas, mask, 0.2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert out[:, 0].gt(0).float().mean() > 0.1 and out[:, 1].sum() > 0  # not an empty roll
    # an interval that excludes the last step's time: the conditional prediction alone
    out = model.sample(canvas, mask, steps=4, cfg=scale, cfg_interval=(0.0, 0.5), silence_below=0.2)
    torch.testing.assert_close(out, _decoded(((cond + 1) / 2).clamp(0, 1), canvas, mask, 0.2), rtol=0, atol=1e-6)
    assert not torch.equal(out, expected)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_known_pixels_come_back_bit_exact(kind: str) -> None:
    torch.manual_seed(0)
    model = build("jit-tiny")
    with torch.no_grad():  # a non-trivial network: the zero-initialised output layer gets weights
        model.net.final_layer.linear.weight.normal_(std=0.5)
    gen = torch.Generator().manual_seed(3)
    mask = torch.stack([make_mask(kind, T, patch_size=model.patch_size, generator=gen) for _ in range(2)])
    mask = mask.repeat(1, 2, 1, 1)  # the same on both planes
    canvas = _target(3)
    canvas[:, 0] *= 1 - torch.rand(canvas[:, 0].shape, generator=gen) * 0.2  # off-grid velocities too
    result, frames = model.sample(canvas, mask, generator=gen, steps=3, sampler="heun", cfg=2.0,
                                  return_steps=True)
    assert result.shape == canvas.shape
    assert torch.equal(result[~mask], canvas[~mask])
    assert len(frames) == 3 and torch.equal(frames[-1], result)
    for frame in frames:
        assert torch.equal(frame[~mask], canvas[~mask])
        assert frame.min() >= 0 and frame.max() <= 1
        assert set(frame[:, 1].unique().tolist()) <= {0.0, 1.0}
        assert torch.all(frame[:, 0][frame[:, 1] > 0] > 0)  # onsets only on notes
    if kind != "none":
        assert (~mask).any() and mask.any()


class EchoNet(nn.Module):
    """Predicts its noisy input as clean: the velocity is zero, so the state never moves."""

    null_label = 1

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None) -> torch.Tensor:
        return x[:, :CHANNELS].clone(), _no_tokens(x)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_start_noise_scales_the_starting_noise(sampler: str) -> None:
    model = _model_with(EchoNet())
    canvas = torch.zeros(1, 2, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    out = model.sample(canvas, mask, generator=torch.Generator().manual_seed(4), sampler=sampler, steps=6,
                       start_noise=0.3, silence_below=0.4)
    noise = torch.randn((1, CHANNELS, 128, T), generator=torch.Generator().manual_seed(4))
    unit = ((0.3 * model.noise_scale * noise + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, _decoded(unit, canvas, mask, 0.4), rtol=0, atol=1e-6)
    hotter = model.sample(canvas, mask, generator=torch.Generator().manual_seed(4), sampler=sampler, steps=6,
                          start_noise=0.6, silence_below=0.4)
    # a pixel sounds where (start_noise * noise_scale * n + 1) / 2 > 0.4: the share follows start_noise
    normal = torch.distributions.Normal(0.0, 1.0)
    for roll, start_noise in ((out, 0.3), (hotter, 0.6)):
        share = (roll[:, 0] > 0).float().mean().item()
        assert share == pytest.approx(normal.cdf(torch.tensor(0.2 / (start_noise * model.noise_scale))).item(),
                                      abs=0.02)


def test_pixels_whose_sounding_channel_is_low_are_silent() -> None:
    assert build("jit-B").sample_defaults["silence_below"] == DEFAULT_SILENCE_BELOW == 0.5
    assert build("jit-tiny").sample_defaults["silence_below"] == 0.35  # the tiny preset's own default
    gen = torch.Generator().manual_seed(5)
    unit = torch.zeros(1, CHANNELS, 128, T)
    unit[:, 0] = torch.rand(128, T, generator=gen)  # how sure the network is that a note sounds
    unit[:, 2] = 0.5  # velocity 63.5 -> 64 (the grid's nearest, ties to even)
    x_star = to_signed(unit)
    model = _model_with(ConstantNet(x_star, x_star))
    canvas = torch.zeros(1, 2, 128, T)
    canvas[:, 0, :, : T // 2 - 1] = torch.rand(128, T // 2 - 1) * 0.05  # faint known notes stay as they are
    canvas[:, 1, :, 0] = 1.0
    mask = torch.zeros_like(canvas, dtype=torch.bool)
    mask[..., T // 2 :] = True
    out = model.sample(canvas, mask, steps=3, silence_below=0.2)
    assert torch.equal(out[~mask], canvas[~mask])
    sounding = unit[0, 0, :, T // 2 :] > 0.2
    assert torch.equal(out[0, 0, :, T // 2 :] > 0, sounding)
    assert torch.all(out[0, 0, :, T // 2 :][sounding] == 64 / 127)
    before = torch.nn.functional.pad(sounding[:, :-1], (1, 0))  # column T/2 - 1 is known silence
    assert torch.equal(out[0, 1, :, T // 2 :] > 0, sounding & ~before)  # each run of sound is one note
    assert 0.7 < sounding.float().mean() < 0.9  # the faint 20% are gone, the rest sound


def test_a_voice_cap_keeps_known_notes_then_each_steps_strongest_pitches() -> None:
    assert build("jit-tiny").sample_defaults["max_voices"] == AUTO_VOICES  # set from the data when training starts
    gen = torch.Generator().manual_seed(7)
    unit = torch.zeros(1, CHANNELS, 128, T)
    unit[:, 0] = torch.rand(128, T, generator=gen)
    unit[:, 2] = 0.5
    x_star = to_signed(unit)
    model = _model_with(ConstantNet(x_star, x_star))
    canvas = torch.zeros(1, 2, 128, T)
    canvas[:, 0, 60] = 0.5  # a known note held all along
    canvas[:, 1, 60, 0] = 1.0
    mask = torch.ones_like(canvas, dtype=torch.bool)
    mask[:, :, 60] = False
    out = model.sample(canvas, mask, steps=2, max_voices=3, capped_silence_below=0.3)
    assert torch.equal(out[~mask], canvas[~mask])
    strength = unit[0, 0].clone()
    strength[60] = -1.0
    top = torch.zeros(128, T, dtype=torch.bool).scatter_(0, strength.topk(2, dim=0).indices, True)
    assert torch.equal(out[0, 0] > 0, (top & (strength > 0.3)) | (canvas[0, 0] > 0))
    assert (out[0, 0] > 0).sum(0).max() == 3
    uncapped = model.sample(canvas, mask, steps=2, max_voices=0, silence_below=0.3)
    assert torch.equal(uncapped[0, 0] > 0, (unit[0, 0] > 0.3) | (canvas[0, 0] > 0))


def test_bad_options_are_named() -> None:
    model = build("jit-tiny")
    canvas = torch.zeros(1, 2, 128, T)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    with pytest.raises(UserError, match="unknown JiT sample options.*accepted"):
        model.sample(canvas, mask, num_iter=3)
    with pytest.raises(UserError, match="sampler"):
        model.sample(canvas, mask, sampler="rk4")
    with pytest.raises(UserError, match="silence_below"):
        model.sample(canvas, mask, silence_below=1.5)
    with pytest.raises(ValueError, match="multiple of 16"):
        model.sample(torch.zeros(1, 2, 128, 40), torch.ones(1, 2, 128, 40, dtype=torch.bool))


def test_onsets_are_peaks_of_the_onset_channel() -> None:
    assert DEFAULT_ONSET_ABOVE == 0.25
    channel = torch.tensor([[[0.1, 0.4, 0.6, 0.3, 0.0, 0.2, 0.24, 0.1, 0.0, 0.9, 0.0, 0.5, 0.5, 0.2, 0.45, 0.3]]])
    sounding = torch.ones_like(channel, dtype=torch.bool)
    # a note sounding from step 0 starts there; an uncertain onset spread over steps 1..3 is one note; 0.24 is
    # too low; a plateau under one half is one onset (its last step); 0.45 is a peak under one half
    assert onsets(channel, sounding)[0, 0].nonzero().flatten().tolist() == [0, 2, 9, 12, 14]
    assert onsets(channel, sounding, 0.2)[0, 0].nonzero().flatten().tolist() == [0, 2, 6, 9, 12, 14]  # 0.24 now
    clear = torch.tensor([[[0.0, 0.6, 0.7, 0.0]]])  # clear onsets on consecutive steps: fast repeated notes
    assert onsets(clear, torch.tensor([[[False, True, True, True]]]))[0, 0].nonzero().flatten().tolist() == [1, 2]


def test_adjacent_onsets_of_clean_restrikes_are_all_found() -> None:
    # three repeated sixteenths of one pitch (common in pop music): onsets at 0, 1 and 2 predicted with certainty
    channel = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0]]])
    sounding = torch.tensor([[[True, True, True, False, False]]])
    assert onsets(channel, sounding)[0, 0].nonzero().flatten().tolist() == [0, 1, 2]


def test_a_weak_peak_right_after_a_start_does_not_split_the_note() -> None:
    # the sound begins one step before the onset channel's (uncertain) peak: one note from step 1, not a
    # one-step note and a re-strike; a clear onset there is still a re-strike, and a later peak a new note
    channel = torch.tensor([[[0.0, 0.1, 0.4, 0.1, 0.1, 0.45, 0.1, 0.0]]])
    sounding = torch.tensor([[[False, True, True, True, True, True, True, False]]])
    assert onsets(channel, sounding)[0, 0].nonzero().flatten().tolist() == [1, 5]
    channel[0, 0, 2] = 0.8
    assert onsets(channel, sounding)[0, 0].nonzero().flatten().tolist() == [1, 2, 5]


def test_a_generated_pixel_after_a_known_note_continues_it() -> None:
    # continuation: a known note sounds up to the prefix boundary and the generated pixels hold it (onset
    # channel low): one note across the boundary, with the known note's velocity; the first generated pixel
    # follows sound, not silence, so it is no forced start
    canvas = torch.zeros(1, 2, 128, T)
    canvas[0, 0, 60, : T // 2] = 70 / 127
    canvas[0, 1, 60, 0] = 1.0
    mask = torch.zeros_like(canvas, dtype=torch.bool)
    mask[..., T // 2 :] = True
    unit = torch.zeros(1, CHANNELS, 128, T)
    unit[0, 0, 60, : T // 2 + 4] = 1.0  # sounds 4 steps into the generated half
    unit[0, 1, 60, T // 2] = 0.1
    unit[0, 2] = 0.5
    out = _model_with(ConstantNet(to_signed(unit), to_signed(unit))).sample(canvas, mask, steps=2, silence_below=0.5)
    notes = roll_to_notes(out[0])
    assert (notes.onset.tolist(), notes.end.tolist(), notes.velocity.tolist()) == ([0], [T // 2 + 4], [70])
