"""EMA of parameters: the update rule is exact, state round-trips through a safe checkpoint."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from fractalmidi.models.ema import EMA


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))


def _perturb(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen))


def test_update_matches_the_formula_by_hand() -> None:
    model = _model(0)
    decays = (0.9, 0.5)
    ema = EMA(model, decays)
    expected = [{n: p.detach().clone() for n, p in model.named_parameters()} for _ in decays]
    for step in range(3):
        _perturb(model, step)
        ema.update(model)
        for decay, exp in zip(decays, expected):
            for name, p in model.named_parameters():
                exp[name] = decay * exp[name] + (1 - decay) * p.detach()
    assert ema.num_updates == 3
    for shadow, exp in zip(ema.shadows, expected):
        for name, value in exp.items():
            torch.testing.assert_close(shadow[name], value, rtol=0, atol=1e-6)
    # one step by hand, as numbers: shadow 1.0, parameter 3.0, decay 0.9 -> 1.2
    one = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        one.weight.fill_(1.0)
    single = EMA(one, (0.9,))
    with torch.no_grad():
        one.weight.fill_(3.0)
    single.update(one)
    assert single.shadows[0]["weight"].item() == pytest.approx(1.2, abs=1e-6)


def test_copy_to_swap_and_state_dict_round_trip() -> None:
    model = _model(1)
    ema = EMA(model, (0.99, 0.999))
    _perturb(model, 5)
    ema.update(model)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}

    with ema.swapped_in(model, index=1):
        for name, p in model.named_parameters():
            assert torch.equal(p, ema.shadows[1][name])
    for name, p in model.named_parameters():
        assert torch.equal(p, trained[name])

    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = EMA(_model(2), (0.99, 0.999))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.num_updates == 1
    for mine, theirs in zip(restored.shadows, ema.shadows):
        for name in mine:
            assert torch.equal(mine[name], theirs[name])

    other = _model(3)
    restored.copy_to(other, index=0)
    for name, p in other.named_parameters():
        assert torch.equal(p, ema.shadows[0][name])


def test_mismatches_are_named() -> None:
    ema = EMA(_model(0), (0.9,))
    with pytest.raises(ValueError, match="decays differ"):
        EMA(_model(0), (0.5,)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="do not match"):
        ema.update(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="outside"):
        EMA(_model(0), (1.0,))
