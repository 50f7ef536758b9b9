"""Assemble and run a training job: run folder, data, module, callbacks, Lightning ``Trainer``."""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from fractalmidi.data.grid import parse_grid
from fractalmidi.data.key import pitch_register, shift_histogram
from fractalmidi.data.loudness import loudness_histogram
from fractalmidi.data.style import STYLE_CLASSES, style_edges, style_histogram, style_label, window_styles
from fractalmidi.data.texture import AUTO_VOICES, fixed_voices, voice_histogram
from fractalmidi.errors import UserError
from fractalmidi.outdir import check_not_input, clear_folder, write_text
from fractalmidi.train.callbacks import GIF_DIR
from fractalmidi.train.checkpoint import (
    CHECKPOINT_DIR,
    EXTRA_KEY,
    LAST_NAME,
    AtomicCheckpointIO,
    check_same_model,
    init_weights,
    resolve_checkpoint,
    run_dir_of,
    safe_load,
)
from fractalmidi.train.config import TrainConfig, dump_yaml, load_config, resolve_model

CONFIG_NAME = "config.yaml"
TENSORBOARD_DIR = "tensorboard"
BEST_NAME = "best"
RUN_ENTRIES = (CONFIG_NAME, CHECKPOINT_DIR, TENSORBOARD_DIR, GIF_DIR)
"""What a run folder holds; ``--overwrite`` removes exactly these."""
LAUNCH_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")
QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*The number of training batches.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*on_epoch=True.*",
    ".*but have no `val_dataloader`.*",
    ".*treespec, LeafSpec.*",
)


@dataclass
class Result:
    """What a finished run reports: its folder, the step reached and the last logged metrics."""

    run_dir: Path
    global_step: int
    metrics: dict[str, float]
    fresh: list[str] = field(default_factory=list)
    """Parameters that started from their initial values, not from ``training.init_from``."""


@dataclass
class Job:
    """A resolved training job: the config, its run folder and the checkpoint to resume, if any."""

    config: TrainConfig
    run_dir: Path
    resume_from: Path | None = None
    fresh: bool = False
    """The run folder held nothing of an earlier run: a run that fails before its first
    checkpoint removes what it wrote, so the same ``output_dir`` can be used again."""


OUTPUT_DIR_KEY = "logging.output_dir"


def plan(config_path: str | None, overrides: list[str], *, resume: str | None = None, overwrite: bool = False) -> Job:
    """Resolve config + overrides (+ the checkpoint's config when resuming) and check the run folder."""
    if resume is not None:
        ckpt_path = resolve_checkpoint(resume)
        saved = safe_load(ckpt_path)[EXTRA_KEY]["config"]
        in_run = ckpt_path.resolve().parent.name == CHECKPOINT_DIR
        elsewhere = any(o.startswith(f"{OUTPUT_DIR_KEY}=") for o in overrides)
        if in_run and not elsewhere:  # a run's checkpoint: the run goes on in its own folder
            overrides = [*overrides, f"{OUTPUT_DIR_KEY}={run_dir_of(ckpt_path)}"]
        elif not elsewhere:
            raise UserError(f"{ckpt_path} is not inside a run folder (e.g. a shipped model): give "
                            f"{OUTPUT_DIR_KEY}=NEW_FOLDER for the continued run")
        config = load_config(config_path, overrides, base=saved)
        run_dir = Path(config.logging.output_dir)
        in_place = in_run and run_dir.resolve() == run_dir_of(ckpt_path).resolve()
        if not in_place and run_dir.is_dir() and any(run_dir.iterdir()):
            raise UserError(f"{OUTPUT_DIR_KEY}={run_dir} must be a new or empty folder to continue {ckpt_path} in")
        check_same_model(resolve_model(saved["model"], stored=True), config.to_dict()["model"])
        return Job(config, run_dir, ckpt_path)
    if config_path is None:
        raise UserError("give a CONFIG.yaml (see configs/), or --resume RUN_DIR|CKPT")
    config = load_config(config_path, overrides)
    if overwrite:
        config.logging.overwrite = True
    run_dir = Path(config.logging.output_dir)
    check_not_input(run_dir, [config.data.root or None], "logging.output_dir")
    if config.training.fast_dev_run or not launcher_rank_zero():
        return Job(config, run_dir)  # only the first process of a multi-process launch owns the folder
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not config.logging.overwrite:
            raise UserError(f"run folder {str(run_dir)!r} exists and is not empty; use --resume {run_dir} to "
                            f"continue it, --overwrite to replace it, or another logging.output_dir")
        clear_folder(run_dir, RUN_ENTRIES)
    return Job(config, run_dir, fresh=not _entries(run_dir))


def _entries(run_dir: Path) -> list[Path]:
    """What of a run (config, checkpoints, logs) ``run_dir`` holds."""
    return [run_dir / name for name in RUN_ENTRIES if (run_dir / name).exists()]


def _discard_failed_run(job: Job) -> None:
    """A fresh run that stopped before any checkpoint leaves nothing (its logs would block the folder)."""
    checkpoints = job.run_dir / CHECKPOINT_DIR
    if not job.fresh or (checkpoints.is_dir() and any(checkpoints.glob("*.ckpt"))):
        return
    clear_folder(job.run_dir, RUN_ENTRIES, ignore_errors=True)
    with contextlib.suppress(OSError):
        job.run_dir.rmdir()  # only if now empty (a folder the user had files in stays)


def launcher_rank_zero() -> bool:
    """False in the extra processes that Lightning / torchrun start for DDP (they re-run this command)."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in LAUNCH_RANK_VARIABLES)


def _datasets(config: TrainConfig) -> tuple[Any, Any, str]:
    from fractalmidi.data import PianoRollDataset, PreparedData

    d = config.data
    if not d.root:
        raise UserError("data.root is not set: give data.root=DATA_DIR (a folder made by 'fractalmidi prepare')")
    data = PreparedData(d.root)
    grid = parse_grid(data.grid)
    common = {"pitch_shift": tuple(d.pitch_shift), "augment_factor": d.augment_factor, "seed": config.training.seed,
              "key_normalize": d.key_normalize, "loudness_normalize": d.loudness_normalize,
              "align": grid.align_steps(d.crop_align), "bar": grid.align_steps("bar"),
              "edge_crops": float(config.model.get("edge_crops") or 0.0),
              "style_edges": d.style_edges if d.style_labels else None}
    train = PianoRollDataset(data, split=d.train_split, crop_length=d.crop_length, train=True, **common)
    val = PianoRollDataset(data, split=d.val_split, crop_length=d.val_crop_length or d.crop_length,
                           train=False, **common)
    if len(train) < config.training.batch_size:
        raise UserError(f"data.root {d.root!r}: split {d.train_split!r} has {len(train)} items, fewer than "
                        f"training.batch_size={config.training.batch_size}")
    return train, val, data.grid


def pin_style(config: TrainConfig) -> TrainConfig:
    """With ``data.style_labels``, ``config`` with the style bins' edges and label counts (``data.style_edges``,
    ``data.style_counts``) from the training pieces' crop-length windows (a resumed run keeps its own, so labels
    keep their meaning) and ``model.num_classes`` set to the labels' count. Runs before the datasets, which
    label their crops with these edges."""
    from fractalmidi.data import PreparedData

    d = config.data
    if not d.style_labels or not d.root:  # no root: the datasets say so
        return config
    classes = config.model.get("num_classes")
    if classes not in (None, 0, 1, STYLE_CLASSES):
        raise UserError(f"data.style_labels gives {STYLE_CLASSES} labels, but model.num_classes is {classes}; "
                        "drop model.num_classes")
    if not (d.style_edges and d.style_counts):
        data = PreparedData(d.root)
        styles = window_styles((data.piece(p) for p in data.split(d.train_split)), d.crop_length)
        edges = style_edges(styles)
        d = replace(d, style_edges=edges, style_counts=style_histogram([style_label(s, edges)
                                                                                      for s in styles]))
    return replace(config, data=d, model={**config.model, "num_classes": STYLE_CLASSES})


def pin_keys(config: TrainConfig, train_set: Any) -> TrainConfig:
    """``config`` with ``data.key_shifts`` counted and ``data.key_register`` measured from the training pieces
    when ``data.key_normalize``."""
    if not config.data.key_normalize:
        return config
    counts = shift_histogram(list(train_set.key_shifts.values()))
    register = pitch_register([m for m in train_set.pitch_means.values() if m is not None])
    data = replace(config.data, key_shifts=counts, key_register=register)
    return replace(config, data=data)


def pin_loudness(config: TrainConfig, train_set: Any) -> TrainConfig:
    """``config`` with ``data.loudness_counts`` counted from the training pieces when ``data.loudness_normalize``."""
    if not config.data.loudness_normalize:
        return config
    counts = loudness_histogram([v for v in train_set.loudness.values() if v is not None])
    return replace(config, data=replace(config.data, loudness_counts=counts))


def pin_voices(config: TrainConfig, train_set: Any) -> TrainConfig:
    """``config`` with a sampler voice cap of :data:`~fractalmidi.data.texture.AUTO_VOICES` (a preset's 'from the
    data') set to the training pieces' fixed voice count (0: they have none)."""
    if config.model.get("max_voices") != AUTO_VOICES:
        return config
    counts = voice_histogram(train_set.data.piece(p)[0].T for p in train_set.pieces)
    return replace(config, model={**config.model, "max_voices": fixed_voices(counts)})


def pin_grid(config: TrainConfig, grid: str) -> TrainConfig:
    """``config`` with ``data.grid`` set to the prepared data's grid (saved with every checkpoint, so
    generate / evaluate need no data folder); a ``data.grid`` that disagrees is a ``UserError``."""
    if config.data.grid is not None and config.data.grid != grid:
        raise UserError(f"data.grid {config.data.grid!r} does not match the grid {grid!r} of data.root "
                        f"{config.data.root!r}; drop data.grid or prepare the data with --grid {config.data.grid}")
    return replace(config, data=replace(config.data, grid=grid))


def _callbacks(config: TrainConfig, run_dir: Path, val_dataset: Any, with_validation: bool) -> list[Any]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from fractalmidi.train.callbacks import (
        FinalCheckpoint,
        ImageLogger,
        ResumableCheckpoint,
        StepProgressBar,
        Throughput,
    )

    lg, t = config.logging, config.training
    callbacks: list[Any] = [Throughput(t.batch_size)]
    if lg.progress_bar:
        callbacks.append(StepProgressBar())
    if t.fast_dev_run:
        return callbacks
    sharded = config.hardware.strategy == "fsdp"  # sampling on one rank would need every rank's shards
    if sharded and lg.log_images_every_n_steps:
        warnings.warn("logging.log_images_every_n_steps is ignored with hardware.strategy=fsdp", stacklevel=2)
    if lg.log_images_every_n_steps and not sharded:
        callbacks.append(ImageLogger(val_dataset, every_n_steps=lg.log_images_every_n_steps,
                                     num_samples=lg.num_image_samples,
                                     sample_length=lg.sample_length or config.data.crop_length,
                                     run_dir=run_dir, seed=t.seed, frame_ms=lg.gif_frame_ms))
    ckpt_dir = run_dir / CHECKPOINT_DIR
    callbacks.append(ResumableCheckpoint(dirpath=ckpt_dir, filename="step_{step:08d}", auto_insert_metric_name=False,
                                         every_n_train_steps=lg.checkpoint_every_n_steps, save_top_k=-1, save_last=True,
                                         save_on_train_epoch_end=False, save_on_exception=True,  # Ctrl-C: resumable
                                         enable_version_counter=False))  # always last.ckpt, never last-v1.ckpt
    callbacks.append(FinalCheckpoint(ckpt_dir / LAST_NAME))
    if with_validation:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename=BEST_NAME, monitor="val/loss", mode="min",
                                         save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False))
    return callbacks


def _trainer(config: TrainConfig, run_dir: Path, val_set: Any, with_validation: bool, logger: Any) -> Any:
    import lightning as L

    t, h = config.training, config.hardware
    return L.Trainer(
        max_steps=t.max_steps, max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None, max_epochs=-1,
        accelerator=h.accelerator, devices=h.devices, num_nodes=h.num_nodes,
        precision=h.precision, strategy=h.strategy, gradient_clip_val=t.grad_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        val_check_interval=t.val_every_n_steps * t.accumulate_grad_batches,
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches if with_validation else 0,
        num_sanity_val_steps=0, log_every_n_steps=config.logging.log_every_n_steps, logger=logger,
        callbacks=_callbacks(config, run_dir, val_set, with_validation),
        enable_progress_bar=config.logging.progress_bar,
        enable_model_summary=False, fast_dev_run=t.fast_dev_run, plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False, default_root_dir=str(run_dir),
    )


def train(job: Job) -> Result:
    """Run ``job`` to ``training.max_steps``; a fresh run that fails before its first checkpoint
    leaves no run folder behind."""
    try:
        return _train(job)
    except BaseException:
        if launcher_rank_zero():
            _discard_failed_run(job)
        raise


def _train(job: Job) -> Result:
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.loggers import TensorBoardLogger

    from fractalmidi.train.data import train_loader, val_loader
    from fractalmidi.train.module import GeneratorModule

    run_dir = job.run_dir
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    L.seed_everything(job.config.training.seed, workers=True, verbose=False)
    config = pin_style(job.config)
    train_set, val_set, grid = _datasets(config)
    config = pin_grid(config, grid)
    for pin in (pin_keys, pin_loudness, pin_voices):
        config = pin(config, train_set)
    t, d = config.training, config.data
    module = GeneratorModule(config)
    fresh = init_weights(module.model, t.init_from) if t.init_from and job.resume_from is None else []
    lengths = {"data.crop_length": d.crop_length, "data.val_crop_length": d.val_crop_length,
               "logging.sample_length": config.logging.sample_length}
    for key, length in lengths.items():
        try:
            if length is not None:
                module.model.check_length(length)
        except ValueError as err:
            raise UserError(f"{key}: {err}") from None
    with_validation = t.limit_val_batches > 0 and len(val_set) > 0
    logger: Any = False
    if not t.fast_dev_run:
        logger = TensorBoardLogger(save_dir=str(run_dir), name=TENSORBOARD_DIR, version="", default_hp_metric=False)
    try:
        trainer = _trainer(config, run_dir, val_set, with_validation, logger)
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        raise UserError(f"hardware: {str(err).strip().splitlines()[0]}") from None
    if not t.fast_dev_run and trainer.is_global_zero:
        write_text(run_dir / CONFIG_NAME, dump_yaml(config))
    position = module.data_position
    loaders = {
        "train_dataloaders": train_loader(train_set, batch_size=t.batch_size, num_workers=d.num_workers,
                                          position=position, seed=t.seed, rank=trainer.global_rank,
                                          world_size=trainer.world_size),
    }
    if with_validation:
        loaders["val_dataloaders"] = val_loader(val_set, batch_size=d.val_batch_size or t.batch_size,
                                                num_workers=d.num_workers, seed=t.seed)
    trainer.fit(module, ckpt_path=str(job.resume_from) if job.resume_from else None, weights_only=True, **loaders)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    return Result(run_dir, trainer.global_step, metrics, fresh)
