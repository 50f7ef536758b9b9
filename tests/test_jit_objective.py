"""JiT objective: the t distribution, the masks and the v-loss match their formulas."""

from __future__ import annotations

import pytest
import torch

from fractalmidi.models import build
from fractalmidi.models.jit.masks import MASK_KINDS, check_mask_probs, draw_masks, make_mask

T = 64


def test_t_is_a_logit_normal_with_the_configured_moments() -> None:
    model = build("jit-tiny", P_mean=-0.8, P_std=0.8)
    torch.manual_seed(0)
    t = model.sample_t(200_000)
    assert 0 < t.min() and t.max() < 1
    logit = torch.logit(t.double())
    assert logit.mean().item() == pytest.approx(-0.8, abs=0.01)
    assert logit.std().item() == pytest.approx(0.8, abs=0.01)
    # P_mean < 0: most training times are noisy (t < 1/2)
    assert (t < 0.5).float().mean().item() == pytest.approx(0.8413, abs=0.01)  # Phi(0.8 / 0.8)


@pytest.mark.parametrize(("probs", "loss_on"), [({"none": 1.0}, "all"), ({"prefix": 1.0}, "unknown"),
                                                ({"patches": 1.0}, "all")])
def test_loss_is_the_v_loss_by_hand(chorale_crop, probs: dict[str, float], loss_on: str) -> None:
    model = build("jit-tiny", mask_probs=probs, loss_on=loss_on, t_eps=0.05, velocity_bins=0,
                  offset_noise=0.0, position_jitter=0).eval()  # eval: no label dropout
    with torch.no_grad():
        model.net.final_layer.linear.weight.normal_(std=0.3)
    x = torch.cat([chorale_crop(T), chorale_crop(2 * T)[..., T:], chorale_crop(T).flip(-1)])
    torch.manual_seed(7)
    total, parts = model.loss(x)

    # redo the same random draws in the same order, then apply the formulas
    torch.manual_seed(7)
    mask = draw_masks(3, T, model.mask_probs, patch_size=model.patch_size)
    t = torch.sigmoid(torch.randn(3) * 0.8 - 0.8).view(3, 1, 1, 1)
    # the network denoises three channels: sounding, onset, velocity (all in [-1, 1]); the velocity
    # channel holds the mean velocity of the roll's notes where none sounds
    assert x.shape == (3, 2, 128, T)
    sounding = x[:, 0] > 0
    mean = torch.stack([x[i, 0][sounding[i]].mean() for i in range(3)]).view(3, 1, 1)
    assert torch.allclose(mean, torch.full_like(mean, 90 / 127))  # the chorale's one velocity
    velocity = torch.where(sounding, x[:, 0], mean)
    data = 2 * torch.stack([sounding.float(), x[:, 1], velocity], 1) - 1
    z = t * data + (1 - t) * torch.randn_like(data) * model.noise_scale
    assert mask.shape == (3, 1, 128, T)  # one mask for all channels
    known = torch.where(mask, torch.zeros_like(data), data)
    with torch.no_grad():
        x_pred, _ = model.net(torch.cat([z, known, mask.float()], 1), t.flatten(), torch.zeros(3, dtype=torch.long))
    assert x_pred.shape == data.shape
    one_minus_t = torch.maximum(1 - t, torch.tensor(0.05))
    v, v_pred = (data - z) / one_minus_t, (x_pred - z) / one_minus_t
    weight = mask.float().expand_as(data) if loss_on == "unknown" else torch.ones_like(data)
    per_sample = ((v - v_pred) ** 2 * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3))
    assert total.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert parts["v_loss"].item() == pytest.approx(total.item())
    # v-loss = x-error / (1 - t)^2
    x_err = ((x_pred - data) ** 2 * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3))
    torch.testing.assert_close(per_sample, x_err / one_minus_t.flatten() ** 2, rtol=1e-4, atol=1e-6)


def test_loss_backpropagates_into_every_parameter(chorale_crop) -> None:
    torch.manual_seed(0)
    model = build("jit-tiny", num_classes=3, in_context_len=4, in_context_start=1)
    # AdaLN-Zero: step 1 moves the output layer, step 2 the modulations, step 3 reaches the rest
    for _ in range(3):
        total, _ = model.loss(chorale_crop(T).repeat(2, 1, 1, 1), labels=torch.tensor([0, 2]))
        model.zero_grad()
        total.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad.sign()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_mask_kinds_have_their_shape(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = make_mask(kind, T, patch_size=16, generator=gen)[0]
        assert mask.shape == (128, T) and mask.any()
        columns, rows = mask.any(0), mask.any(1)
        if kind == "none":
            assert mask.all()
        elif kind == "prefix":  # known prefix, then everything
            first = int(columns.float().argmax())
            assert first >= 1 and mask[:, first:].all() and not mask[:, :first].any()
        elif kind == "span":  # whole columns in one contiguous span, some known
            idx = columns.nonzero().flatten()
            assert mask[:, columns].all() and len(idx) == idx[-1] - idx[0] + 1 < T
        elif kind == "band":  # a rectangle of pitches x steps
            assert mask[rows][:, columns].all() and mask.sum() == rows.sum() * columns.sum() and not mask.all()
        else:  # whole 16 x 16 cells
            cells = mask.view(8, 16, T // 16, 16)
            assert (cells.all(1).all(-1) == cells.any(1).any(-1)).all()


def test_mask_kinds_are_drawn_with_their_probabilities() -> None:
    probs = check_mask_probs({"none": 3, "prefix": 1})
    assert probs == {"none": 0.75, "prefix": 0.25, "span": 0.0, "band": 0.0, "patches": 0.0}
    masks = draw_masks(400, T, probs, generator=torch.Generator().manual_seed(0))
    share_full = masks.flatten(1).all(1).float().mean().item()
    assert share_full == pytest.approx(0.75, abs=0.07)
    with pytest.raises(ValueError, match="unknown mask kinds"):
        check_mask_probs({"holes": 1.0})


def test_offset_noise_moves_each_roll_and_channel_as_a_whole() -> None:
    shape = torch.Size((256, 3, 64, 32))
    for offset in (0.0, 0.5):
        model = build("jit-tiny", offset_noise=offset, noise_scale=2.0)
        e = model.noise(shape, torch.Generator().manual_seed(0), torch.device("cpu"))
        per_roll = e.mean(dim=(2, 3))
        # a constant of std 2 * offset per roll and channel, on top of pixel noise of std 2
        assert per_roll.std().item() == pytest.approx(2 * offset, abs=0.08)
        assert (e - per_roll[..., None, None]).std().item() == pytest.approx(2.0, abs=0.01)


def test_position_jitter_shifts_time_positions_by_a_drawn_column_offset(chorale_crop) -> None:
    """The network adds the sin-cos positions of columns offset..offset+cols-1; training draws the
    offset uniformly from 0..position_jitter (sampling uses 0)."""
    from fractalmidi.models.layers import sincos_2d

    model = build("jit-tiny", position_jitter=3).eval()
    net, p = model.net, model.patch_size
    x = torch.randn(1, 7, 128, 2 * p)
    seen = []
    hook = net.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        for offset in (0, 2):
            net(x, torch.full((1,), 0.5), torch.zeros(1, dtype=torch.long), col_offset=offset)
        embedded = net.patch_embed(x)[0]
    hook.remove()
    rows = 128 // p
    table = sincos_2d(rows, 4, model.options.dim).view(rows, 4, -1)
    torch.testing.assert_close(seen[0][0] - embedded, table[:, :2].reshape(rows * 2, -1))
    torch.testing.assert_close(seen[1][0] - embedded, table[:, 2:].reshape(rows * 2, -1))

    offsets = []
    forward = net.forward
    net.forward = lambda *a, col_offset=0, **k: offsets.append(col_offset) or forward(*a, col_offset=col_offset, **k)
    crop = chorale_crop(2 * p)
    torch.manual_seed(0)
    for _ in range(60):
        model.loss(crop)
    assert set(offsets) == {0, 1, 2, 3}
