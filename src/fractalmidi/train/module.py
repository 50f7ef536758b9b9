"""The one LightningModule that trains every generator family through the model contract."""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from fractalmidi.errors import UserError
from fractalmidi.models import Generator, build
from fractalmidi.train.checkpoint import EXTRA_KEY, FORMAT_VERSION, check_same_model, package_versions
from fractalmidi.train.config import TrainConfig
from fractalmidi.train.data import DataPosition, split_batch
from fractalmidi.train.schedule import warmup_cosine_scheduler

RANK_SEED_STRIDE = 7919
"""Other ranks draw model randomness (masks, noise) from ``seed + rank * stride``."""
VAL_SEED_OFFSET = 104_729
"""Validation losses use their own fixed RNG stream: deterministic and invisible to training."""


class NonFiniteLoss(UserError):
    """Training diverged (NaN/inf loss): stop instead of writing all-NaN weights."""


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors / numbers (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def private_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block on a fixed RNG stream, leaving the training stream exactly where it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def build_generator(config: TrainConfig) -> Generator:
    """The generator a config names (preset + overrides), with config errors as ``UserError``."""
    try:
        return build(config.model_name, **config.model_overrides)
    except KeyError as err:
        raise UserError(f"model.name: {err.args[0]}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"model {config.model_name!r}: {err}") from None


class GeneratorModule(L.LightningModule):
    """AdamW + warmup/cosine on ``model.loss``; EMA when the model asks for it; resumable state."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.model = build_generator(config)
        self.data_position = DataPosition()
        self.ema: Any = None
        self._pending_ema: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._loss_fn = torch.compile(self.model.loss) if config.training.compile else self.model.loss

    # ----------------------------------------------------------------- set-up
    @property
    def ema_decays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self.model.ema_decays)

    def on_fit_start(self) -> None:
        if self.ema_decays and self.ema is None:
            if "fsdp" in str(self.config.hardware.strategy):
                raise UserError("EMA weights are not supported with hardware.strategy=fsdp; use ddp")
            from fractalmidi.models.ema import EMA

            self.ema = EMA(self.model, self.ema_decays)
            if self._pending_ema is not None:
                self.ema.load_state_dict(self._pending_ema)
                self._pending_ema = None
        if self.trainer.world_size > 1 and self._pending_rng is None and self.global_rank:
            torch.manual_seed(self.config.training.seed + self.global_rank * RANK_SEED_STRIDE)

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.config.training
        decay, no_decay = [], []
        for param in self.model.parameters():
            if param.requires_grad:  # norms, biases, gains: no weight decay (as in MAR / JiT)
                (decay if param.ndim >= 2 else no_decay).append(param)
        groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=t.lr, betas=tuple(t.betas))
        # built from the current config, also on --resume: a restored state keeps only its position
        scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=t.warmup_steps,
                                            total_steps=t.decay_steps or t.max_steps, min_ratio=t.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ----------------------------------------------------------------- steps
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        budget = self.config.training.max_minutes
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None) if budget else None
        if timer is not None:
            self.lr_schedulers().follow_clock(min(1.0, timer.time_elapsed("train") / (budget * 60.0)))
        if self._pending_rng is not None:  # resume: continue the exact random stream of the saved run
            if self.global_rank == 0:
                set_rng_state(self._pending_rng)
            else:
                torch.manual_seed(self.config.training.seed + self.global_rank * RANK_SEED_STRIDE + self.global_step)
            self._pending_rng = None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, conditions = split_batch(batch)
        loss, parts = self._loss_fn(x, **conditions)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLoss(f"the training loss became {loss.item()} at step {self.global_step}: training stopped "
                                f"(lower training.lr or set training.grad_clip; the last good checkpoint is kept)")
        size = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            if name != "loss":
                self.log(f"train/{name}", value, batch_size=size)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=size)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.model)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, conditions = split_batch(batch)
        with private_rng(self.config.training.seed + VAL_SEED_OFFSET + batch_idx, self.device):
            loss, _ = self.model.loss(x, **conditions)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        return loss

    # ----------------------------------------------------------------- sampling
    @contextlib.contextmanager
    def sampling_model(self) -> Iterator[Generator]:
        """The generator to sample from, in eval mode: a copy holding EMA weights when kept."""
        if self.ema is not None:
            model = copy.deepcopy(self.model)
            self.ema.copy_to(model, index=0)
            yield model.eval()
            return
        was_training = self.model.training
        self.model.eval()
        try:
            yield self.model
        finally:
            self.model.train(was_training)

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # batches this rank has consumed: every optimizer step takes accumulate_grad_batches of the endless
        # stream (an interrupted, half-accumulated step is redone on resume)
        self.data_position.batches = self.global_step * self.trainer.accumulate_grad_batches
        checkpoint[EXTRA_KEY] = {
            "format": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "versions": package_versions(),
            "family": self.model.family,
            "ema_decays": list(self.ema_decays),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "data_position": self.data_position.state_dict(),
            "world_size": self.trainer.world_size,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get(EXTRA_KEY)
        if extra is None:
            raise UserError("the checkpoint is not a FractalMIDI training checkpoint")
        check_same_model(extra["config"]["model"], self.config.to_dict()["model"])
        self.data_position.load_state_dict(extra["data_position"])
        self._pending_ema = extra.get("ema")
        self._pending_rng = extra.get("rng")
