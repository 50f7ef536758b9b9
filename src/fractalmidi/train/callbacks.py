"""Training callbacks: piano-roll images and generation GIFs, throughput, a step progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

from fractalmidi.data.roll import ROLL_PLANES
from fractalmidi.models import NUM_PITCHES
from fractalmidi.train.data import split_batch
from fractalmidi.train.module import GeneratorModule, NonFiniteLoss, private_rng

GIF_DIR = "gifs"
SEPARATOR_ROWS = 2
"""Grey rows between stacked piano-rolls in one logged image."""
SEPARATOR_GREY = 96
PREVIEW_FRAMES = 4
"""Generation frames (coarse to fine) side by side in the logged preview."""
IMAGE_MIN_WIDTH = 512
"""Short rolls are widened (each step repeated) to at least this many pixels, to be readable."""
SAMPLE_SEED_OFFSET = 31_337
THROUGHPUT_SMOOTHING = 0.9


def _stack_rolls(rolls: list[np.ndarray], axis: int) -> np.ndarray:
    """RGB piano-rolls joined along ``axis`` (0 = above each other) with grey separators."""
    from fractalmidi.viz import roll_to_rgb

    images = [roll_to_rgb(r) for r in rolls]
    widen = max(1, IMAGE_MIN_WIDTH // images[0].shape[1])
    images = [image.repeat(widen, axis=1) for image in images]
    shape = list(images[0].shape)
    shape[axis] = SEPARATOR_ROWS
    gap = np.full(shape, SEPARATOR_GREY, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, image in enumerate(images):
        parts += [gap, image] if i else [image]
    return np.concatenate(parts, axis=axis)


class ImageLogger(Callback):
    """Every ``every_n_steps``: ground truth and generated rolls to TensorBoard, GIFs to ``gifs/``.

    Sampling starts from an empty canvas with a fixed seed on the model's EMA weights when kept
    (so successive images show the model changing, not the noise).
    """

    def __init__(self, val_dataset: Any, *, every_n_steps: int, num_samples: int, sample_length: int,
                 run_dir: Path, seed: int, frame_ms: int) -> None:
        self.val_dataset = val_dataset
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.sample_length = sample_length
        self.gif_dir = Path(run_dir) / GIF_DIR
        self.seed = seed
        self.frame_ms = frame_ms
        self._last_step = -1

    def _ground_truth(self) -> list[np.ndarray]:
        items = [self.val_dataset[i] for i in range(min(self.num_samples, len(self.val_dataset)))]
        return [split_batch(item)[0].numpy() for item in items]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps or trainer.sanity_checking:
            return
        self._last_step = step
        if trainer.is_global_zero:
            self.log_images(trainer, pl_module, step)
        trainer.strategy.barrier("fractalmidi-images")

    @torch.no_grad()
    def log_images(self, trainer: L.Trainer, pl_module: GeneratorModule, step: int) -> None:
        from fractalmidi.viz import save_gif

        experiment = trainer.logger.experiment if trainer.logger is not None else None
        n, length = self.num_samples, self.sample_length
        canvas = torch.zeros(n, ROLL_PLANES, NUM_PITCHES, length, device=pl_module.device)
        mask = torch.ones_like(canvas, dtype=torch.bool)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed + SAMPLE_SEED_OFFSET)
        with pl_module.sampling_model() as model, private_rng(self.seed + SAMPLE_SEED_OFFSET, pl_module.device):
            result, steps = model.sample(canvas, mask, generator=gen, return_steps=True)
        result = result.float().clamp(0, 1).cpu()
        frames = [s.float().clamp(0, 1).cpu() for s in steps] + [result]
        self.gif_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save_gif([f[i].numpy() for f in frames], self.gif_dir / f"step_{step:08d}_sample_{i}.gif",
                     frame_ms=self.frame_ms)
        if experiment is None:
            return
        truth = self._ground_truth()
        if truth:
            experiment.add_image("images/ground_truth", _stack_rolls(truth, 0), step, dataformats="HWC")
        experiment.add_image("images/generated", _stack_rolls([r.numpy() for r in result], 0), step,
                             dataformats="HWC")
        picks = np.linspace(0, len(frames) - 1, min(PREVIEW_FRAMES, len(frames))).round().astype(int)
        preview = _stack_rolls([frames[int(k)][0].numpy() for k in picks], 1)
        experiment.add_image("images/generation_preview", preview, step, dataformats="HWC")


class Throughput(Callback):
    """Training samples per second (all ranks, data loading included), smoothed, as ``samples/s``."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._last: float | None = None
        self._rate: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        now = time.perf_counter()
        elapsed = now - (self._last or now)
        self._last = now
        if elapsed <= 0:
            return
        rate = self.batch_size * trainer.world_size / elapsed
        smoothed = THROUGHPUT_SMOOTHING * (self._rate or 0.0) + (1 - THROUGHPUT_SMOOTHING) * rate
        self._rate = rate if self._rate is None else smoothed
        pl_module.log("samples/s", self._rate, prog_bar=True, batch_size=self.batch_size)

    def on_validation_end(self, *_: Any) -> None:
        self._last = None  # validation time is not training throughput


class StepProgressBar(TQDMProgressBar):
    """The training bar counts optimizer steps up to ``max_steps`` (the data stream is endless)."""

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.set_description("train step")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        n = trainer.global_step
        bar = self.train_progress_bar
        if bar is not None and self._should_update(n, bar.total) and not bar.disable:
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()


class FinalCheckpoint(Callback):
    """Writes ``last.ckpt`` when training ends between two periodic checkpoints (so it is the final state)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _saved_step(self) -> int:
        if not self.path.is_file():
            return -1
        return int(torch.load(self.path, mmap=True, weights_only=True, map_location="cpu")["global_step"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step() != trainer.global_step:  # every rank decides alike: saving is collective
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, loops, callbacks


class ResumableCheckpoint(ModelCheckpoint):
    """Periodic checkpoints plus ``last.ckpt``, also on Ctrl-C, but never after a diverged step:
    those weights are not finite, and ``last.ckpt`` keeps the last good state."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, NonFiniteLoss):
            super().on_exception(trainer, pl_module, exception)
