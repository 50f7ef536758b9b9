"""Activation checkpointing (``grad_checkpointing=True``): same loss and gradients, recomputed blocks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fractalmidi.models import build

TOLERANCE = 1e-6
CROP = 32
BATCH = 2
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

CASES = {
    "fractal-mar": ("fractal-tiny", {}),
    "fractal-ar": ("fractal-ar-tiny", {}),
    # dropout in the middle block: the recomputation must replay the same dropout masks
    "jit": ("jit-tiny", {"proj_drop": 0.1, "attn_drop": 0.1}),
}


def _owners(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules that hold the checkpointed blocks (and the flag)."""
    return [model.net] if model.family == "jit" else list(model.levels)


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [block for owner in _owners(model) for block in owner.blocks]


def _loss_and_grads(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # the same masks, times, noise and dropout for both models
    total, _ = model.loss(x)
    model.zero_grad()
    total.backward()
    return total.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", list(CASES))
def test_same_loss_and_gradients_with_checkpointing(chorale_crop, torch_single_thread, case: str) -> None:
    preset, options = CASES[case]
    torch.manual_seed(0)
    plain = build(preset, **options).train()
    checkpointed = build(preset, **options, grad_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    for block in _blocks(checkpointed):
        block.register_forward_pre_hook(lambda *_: calls.append(1))  # a recomputation may stop early: no post hook
    x = chorale_crop(CROP).repeat(BATCH, 1, 1, 1)

    loss, grads = _loss_and_grads(plain, x)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed, x)
    assert torch.allclose(loss, loss_ckpt, rtol=0, atol=TOLERANCE)
    assert grads.keys() == grads_ckpt.keys() and len(grads) == len(list(plain.parameters()))
    for name, grad in grads.items():
        assert torch.allclose(grad, grads_ckpt[name], rtol=0, atol=TOLERANCE), name

    trained_calls = len(calls)
    calls.clear()  # evaluation and sampling never recompute
    torch.manual_seed(1)
    with torch.no_grad():
        checkpointed.loss(x)
    forwards = len(calls)
    assert trained_calls == 2 * forwards > 0  # while training, every block ran again in the backward pass
    torch.manual_seed(1)
    checkpointed.eval().loss(x)
    assert len(calls) == 2 * forwards


@pytest.mark.data
@pytest.mark.parametrize(("config", "overrides"), [
    ("fractal_tiny.yaml", ["model.num_iter_list=[2, 1, 1]"]),
    ("jit_tiny.yaml", ["model.steps=3"]),
])
def test_fast_dev_run_with_grad_checkpointing(prepared_jsb: Path, tmp_path: Path, torch_single_thread,
                                              config: str, overrides: list[str]) -> None:
    from fractalmidi.train.runner import plan, train

    job = plan(str(CONFIGS / config), [
        *overrides, f"data.root={prepared_jsb}", f"logging.output_dir={tmp_path / 'run'}",
        "training.grad_checkpointing=true", "training.fast_dev_run=true", f"data.crop_length={CROP}",
        f"training.batch_size={BATCH}", "training.limit_val_batches=1", "logging.log_images_every_n_steps=0",
        "logging.progress_bar=false",
    ])
    model = build(job.config.model_name, **job.config.model_overrides)
    assert all(owner.grad_checkpointing for owner in _owners(model))
    result = train(job)
    assert result.global_step == 1
    assert math.isfinite(result.metrics["train/loss"]) and result.metrics["train/loss"] > 0
