"""JiT velocity bins: the bin grid, the cross-entropy by hand, and each generated note drawing one velocity at
its start pixel from its token's predicted probabilities (so a piece keeps its spread of loudness)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fractalmidi.data.roll import MAX_VELOCITY, roll_to_notes
from fractalmidi.models import build
from fractalmidi.models.jit.denoiser import bin_velocity, to_signed, velocity_bin
from fractalmidi.models.jit.masks import draw_masks
from fractalmidi.models.registry import preset_defaults

T = 64
BINS = 8
P = preset_defaults("jit-tiny")["patch_size"]
"""A token's velocity distribution covers P x P pixels."""


def _notes(seed: int, count: int = 60) -> torch.Tensor:
    """Planes ``(1, 2, 128, T)``: ``count`` notes of 2-5 steps on random pitches and times, any velocity."""
    g = torch.Generator().manual_seed(seed)
    planes = torch.zeros(1, 2, 128, T)
    for _ in range(count):
        pitch, start = int(torch.randint(20, 108, (1,), generator=g)), int(torch.randint(0, T - 6, (1,), generator=g))
        if planes[0, 0, pitch, max(start - 1, 0) : start + 6].any():
            continue  # keep notes apart, so each is one run of sounding pixels
        length = int(torch.randint(2, 6, (1,), generator=g))
        planes[0, 0, pitch, start : start + length] = int(torch.randint(1, 128, (1,), generator=g)) / MAX_VELOCITY
        planes[0, 1, pitch, start] = 1
    return planes


class BinsNet(nn.Module):
    """Stands in for the network: the channels of ``planes`` and token velocity-bin logits ``logits(t)``
    ``(1, BINS, 128 / P, T / P)``."""

    null_label = 1

    def __init__(self, planes: torch.Tensor, logits) -> None:  # noqa: ANN001 (a callable of t)
        super().__init__()
        velocity = planes[:, 0]
        self.x = to_signed(torch.stack([(velocity > 0).float(), planes[:, 1], velocity], 1))
        self.logits = logits

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *,
                drop_labels: bool | None = None) -> torch.Tensor:
        return self.x.expand(x.shape[0], -1, -1, -1).clone(), self.logits(float(t[0])).expand(x.shape[0], -1, -1, -1)


def _model(net: nn.Module) -> nn.Module:
    model = build("jit-tiny", velocity_bins=BINS)
    model.net = net
    return model


def test_velocity_bins_cover_1_to_127_in_equal_steps() -> None:
    v = torch.arange(1, MAX_VELOCITY + 1) / MAX_VELOCITY
    for bins in (2, BINS, 32):
        index = velocity_bin(v, bins)
        assert index.min() == 0 and index.max() == bins - 1 and torch.all(index.diff() >= 0)
        assert torch.bincount(index).min() >= MAX_VELOCITY // bins  # equal widths
        back = bin_velocity(index, bins) * MAX_VELOCITY
        assert (back - v * MAX_VELOCITY).abs().max() <= MAX_VELOCITY / bins / 2 + 0.5  # within half a bin
    torch.testing.assert_close(bin_velocity(velocity_bin(v, MAX_VELOCITY), MAX_VELOCITY).float(), v)  # 127: exact


def test_velocity_cross_entropy_by_hand(chorale_crop) -> None:
    model = build("jit-tiny", velocity_bins=BINS, mask_probs={"prefix": 1.0}).eval()
    with torch.no_grad():
        model.net.final_layer.linear.weight.normal_(std=0.3)
    x = torch.cat([chorale_crop(T), _notes(3)])
    torch.manual_seed(7)
    total, parts = model.loss(x)
    # redo the draws in the same order
    torch.manual_seed(7)
    mask = draw_masks(2, T, model.mask_probs, patch_size=model.patch_size)
    t = torch.sigmoid(torch.randn(2) * model.P_std + model.P_mean).view(2, 1, 1, 1)
    velocity = x[:, 0]
    sounding = velocity > 0
    mean = torch.stack([velocity[i][sounding[i]].mean() for i in range(2)]).view(2, 1, 1)
    data = to_signed(torch.stack([sounding.float(), x[:, 1], torch.where(sounding, velocity, mean)], 1))
    z = t * data + (1 - t) * torch.randn_like(data)
    known = torch.where(mask, torch.zeros_like(data), data)
    with torch.no_grad():
        _, logits = model.net(torch.cat([z, known, mask.float()], 1), t.flatten(), torch.zeros(2, dtype=torch.long))
    assert logits.shape == (2, BINS, 128 // P, T // P)
    # each pixel scored under its token's distribution
    log_p = logits.log_softmax(1).repeat_interleave(P, 2).repeat_interleave(P, 3)
    # bins of 127/8 velocities each (silent pixels, scored nowhere, at bin 0)
    target = (((velocity * MAX_VELOCITY).round() - 1) * BINS // MAX_VELOCITY).clamp_min(0)
    on = mask[:, 0] & sounding
    assert on.sum() > 40
    # a sample with nothing sounding in its generated part adds 0
    per_sample = [-log_p[i].gather(0, target[i].long()[None])[0][on[i]].sum() / max(int(on[i].sum()), 1)
                  for i in range(2)]
    expected = torch.stack(per_sample).mean().item()
    assert parts["velocity_ce"].item() == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(parts["v_loss"].item() + expected, rel=1e-5)


def test_each_note_takes_the_velocity_drawn_at_its_start_pixel() -> None:
    planes = _notes(0)
    notes = roll_to_notes(planes[0])
    assert len(notes) > 30 and (notes.onset // P != (notes.end - 1) // P).sum() > 3  # some cross into the next token
    # a sure bin per token, a different one in the next token along time: a note sounds at its start
    # token's bin, not at a later pixel's
    rows, cols = torch.meshgrid(torch.arange(128 // P), torch.arange(T // P), indexing="ij")
    chosen = (rows + cols) % BINS
    logits = nn.functional.one_hot(chosen, BINS).permute(2, 0, 1)[None].float() * 50
    out = _model(BinsNet(planes, lambda t: logits)).sample(torch.zeros_like(planes), torch.ones_like(planes).bool(),
                                                          steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 1], planes[:, 1]) and torch.equal(out[:, 0] > 0, planes[:, 0] > 0)
    for pitch, onset, end in zip(notes.pitch.tolist(), notes.onset.tolist(), notes.end.tolist()):
        level = out[0, 0, pitch, onset:end]
        assert torch.all(level == level[0])  # one velocity per note: its start token's bin's centre
        start_bin = chosen[pitch // P, onset // P]
        assert level[0].item() == pytest.approx(bin_velocity(start_bin, BINS).item())


def test_note_velocities_follow_the_predicted_probabilities() -> None:
    planes = torch.cat([_notes(seed) for seed in range(8)])
    probs = torch.zeros(BINS)
    probs[1], probs[6] = 0.25, 0.75
    logits = probs.log().view(1, BINS, 1, 1).expand(1, BINS, 128 // P, T // P)
    model = _model(BinsNet(planes[:1], lambda t: logits))
    counts = torch.zeros(BINS)
    for seed in range(8):
        one = planes[seed : seed + 1]
        model.net = BinsNet(one, lambda t: logits)
        out = model.sample(torch.zeros_like(one), torch.ones_like(one).bool(), steps=2,
                           generator=torch.Generator().manual_seed(seed))
        drawn = velocity_bin(out[0, 0][out[0, 1] > 0], BINS)
        counts += torch.bincount(drawn, minlength=BINS).float()
    assert counts.sum() > 300 and counts[[1, 6]].sum() == counts.sum()
    assert counts[6] / counts.sum() == pytest.approx(0.75, abs=0.06)  # 4+ standard errors
