"""Training configuration: YAML file + dotted ``key=value`` overrides -> validated dataclasses.

Every key is checked against the schema below (and ``model.*`` against the preset's own
keyword arguments), so a typo is a one-line error naming the closest valid key instead of a
silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from fractalmidi.errors import UserError

SECTIONS = ("model", "data", "training", "hardware", "logging")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")
MODEL_NAME_KEY = "name"
SEED_NAMES = {
    "learning_rate": "training.lr", "train_batch_size": "training.batch_size",
    "val_batch_size": "data.val_batch_size", "val_check_interval_steps": "training.val_every_n_steps",
    "grad_clip_val": "training.grad_clip", "gradient_clip_val": "training.grad_clip", "epochs": "training.max_steps",
    "grad_checkpoint": "training.grad_checkpointing", "pitch_shift_min": "data.pitch_shift",
    "pitch_shift_max": "data.pitch_shift", "gpus": "hardware.devices", "accumulate": "training.accumulate_grad_batches",
}
"""Names from the seed projects' configs / flags and the key that replaces each."""


@dataclass
class DataConfig:
    """Where the prepared data lives and how training crops are drawn."""

    root: str = ""
    crop_length: int = 256
    val_crop_length: int | None = None
    """Validation crop length; None = ``crop_length``."""
    train_split: str = "train"
    val_split: str = "valid"
    pitch_shift: list[int] = field(default_factory=lambda: [0, 0])
    """Random transposition of training crops, in semitones (off by default: it would undo key_normalize)."""
    key_normalize: bool = True
    """Train in C major / A minor (each piece transposed by its estimated key); generated pieces move
    to keys drawn from ``key_shifts``."""
    key_shifts: list[int] | None = None
    """Filled at train time with key_normalize: how many training pieces needed each normalising shift
    (-6..5), so a checkpoint can pick keys like its data's without the data folder."""
    augment_factor: int = 1
    num_workers: int = 2
    val_batch_size: int | None = None
    """None = ``training.batch_size``."""
    grid: str | None = None
    """Time grid of the rolls; filled from the prepared data's manifest at train time, so a
    checkpoint knows its grid without the data folder (must match the data when given)."""


@dataclass
class TrainingConfig:
    """Optimisation: AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    max_steps: int = 200_000
    max_minutes: float | None = None
    """Wall-clock budget: training stops at the clock (saving a resumable ``last.ckpt``), and the
    LR schedule's progress is the larger of steps / ``max_steps`` and time / ``max_minutes``, so
    the cosine reaches its floor when the budget ends. Time spent carries over on ``--resume``."""
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 2000
    decay_steps: int | None = None
    """Length of the cosine schedule; None = ``max_steps`` (set it to stop early on a longer schedule)."""
    min_lr_ratio: float = 0.0
    grad_clip: float = 3.0
    """Gradient-norm clipping; 0 disables it."""
    accumulate_grad_batches: int = 1
    val_every_n_steps: int = 2000
    limit_val_batches: int = 16
    seed: int = 0
    fast_dev_run: bool = False
    """One training and one validation batch, no checkpoints or logs written (a smoke test)."""
    grad_checkpointing: bool = False
    """Activation checkpointing: trade compute for memory (the model must support it)."""
    compile: bool = False
    """``torch.compile`` the training loss (GPU; slow to warm up on a CPU)."""


@dataclass
class HardwareConfig:
    """Devices and numerics, passed to the Lightning ``Trainer``."""

    accelerator: str = "auto"
    devices: Union[int, str, list[int]] = "auto"
    num_nodes: int = 1
    precision: str = "32"
    strategy: str = "auto"


@dataclass
class LoggingConfig:
    """The run folder and what goes into it."""

    output_dir: str = "runs/default"
    overwrite: bool = False
    checkpoint_every_n_steps: int = 2000
    log_every_n_steps: int = 10
    log_images_every_n_steps: int = 5000
    """0 disables image / GIF logging."""
    num_image_samples: int = 2
    sample_length: int | None = None
    """Length of logged generated samples; None = ``data.crop_length``."""
    gif_frame_ms: int = 150
    progress_bar: bool = True


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "hardware": HardwareConfig,
    "logging": LoggingConfig,
}


@dataclass
class TrainConfig:
    """A whole experiment. ``model`` is ``{"name": preset, **build overrides}``."""

    model: dict[str, Any]
    data: DataConfig
    training: TrainingConfig
    hardware: HardwareConfig
    logging: LoggingConfig

    @property
    def model_name(self) -> str:
        return str(self.model[MODEL_NAME_KEY])

    @property
    def model_overrides(self) -> dict[str, Any]:
        """Keyword overrides for ``fractalmidi.models.build`` (activation checkpointing included)."""
        overrides = {k: v for k, v in self.model.items() if k != MODEL_NAME_KEY}
        if self.training.grad_checkpointing:
            overrides["grad_checkpointing"] = True
        return overrides

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (str / numbers / lists / None only): safe in YAML and ``weights_only`` checkpoints."""
        out: dict[str, Any] = {"model": _plain(self.model)}
        for name in SECTION_TYPES:
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        return out


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively; rejects objects that YAML / weights_only cannot hold."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f"config value {value!r} is not a plain YAML value (number, string, list, mapping)")


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.lr=3e-4"`` -> ``("training.lr", 3e-4)``; the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"override {text!r} is not of the form section.key=value (e.g. training.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise UserError(f"override {text!r}: the value is not valid YAML ({err.__class__.__name__})") from None
    return key, value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file; it must be a mapping of sections."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config file {str(path)!r} must be a mapping with sections {', '.join(SECTIONS)}")
    return raw


def valid_keys(model_name: str | None = None) -> list[str]:
    """Every dotted key the schema accepts (``model.*`` from the preset's defaults when known)."""
    keys = [f"model.{MODEL_NAME_KEY}"]
    if model_name:
        keys += [f"model.{k}" for k in _preset_keys(model_name)]
    for section, cls in SECTION_TYPES.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _preset_options(model_name: str) -> dict[str, Any]:
    """Every keyword the preset's factory accepts, with its value in this preset (or the factory default)."""
    from fractalmidi.models.registry import preset_defaults, preset_factory

    try:
        defaults = preset_defaults(model_name)
        factory = preset_factory(model_name)
    except KeyError as err:
        raise UserError(f"model.name: {err.args[0]}") from None
    options: dict[str, Any] = {}
    for param in inspect.signature(factory).parameters.values():
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) and param.name != "self":
            options[param.name] = param.default  # ``param.empty`` when required
    options.update(defaults)
    return options


def _preset_keys(model_name: str) -> list[str]:
    return sorted(_preset_options(model_name))


def _unknown_key(key: str, model_name: str | None) -> UserError:
    candidates = valid_keys(model_name)
    renamed = SEED_NAMES.get(key.rsplit(".", 1)[-1])
    if renamed:
        return UserError(f"unknown config key {key!r}; did you mean {renamed!r}?")
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:  # compare within the section, e.g. training.maxsteps
        section = key.split(".", 1)[0]
        close = difflib.get_close_matches(key, [c for c in candidates if c.startswith(section + ".")], n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else f"; sections are {', '.join(SECTIONS)}"
    return UserError(f"unknown config key {key!r}{hint}")


def _set_dotted(tree: dict[str, Any], key: str, value: Any, model_name: str | None) -> None:
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS or not parts[1]:
        raise _unknown_key(key, model_name)
    section = tree.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise UserError(f"config section {parts[0]!r} must be a mapping, got {section!r}")
    section[parts[1]] = value


def merge_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings to a raw config tree (a new tree; inputs untouched)."""
    tree = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    pairs = [parse_override(text) for text in overrides]
    for key, value in pairs:  # the model name first: it decides which model.* keys exist
        if key == f"model.{MODEL_NAME_KEY}":
            _set_dotted(tree, key, value, None)
    model_name = (tree.get("model") or {}).get(MODEL_NAME_KEY) if isinstance(tree.get("model"), Mapping) else None
    for key, value in pairs:
        _set_dotted(tree, key, value, model_name)
    return tree


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a field type; numbers given as YAML strings (``1e-4``) are converted."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except UserError:
                continue
        raise UserError(f"{key}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list of {_type_name(item_type)}, got {value!r}")
        return [_coerce(v, item_type, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config field type {tp!r}")  # a schema bug, not user input


def _build_section(section: str, values: Any, model_name: str | None) -> Any:
    cls = SECTION_TYPES[section]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise UserError(f"config section {section!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key(f"{section}.{key}", model_name)
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


def _build_model(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping) or not values.get(MODEL_NAME_KEY):
        raise UserError("config section 'model' needs a preset name: model.name (see 'fractalmidi info')")
    name = str(values[MODEL_NAME_KEY])
    allowed = set(_preset_keys(name))
    for key in values:
        if key != MODEL_NAME_KEY and key not in allowed:
            raise _unknown_key(f"model.{key}", name)
    return {MODEL_NAME_KEY: name, **_plain_defaults(name), **{k: v for k, v in values.items() if k != MODEL_NAME_KEY}}


def _plain_defaults(model_name: str) -> dict[str, Any]:
    """The preset's own settings, so the saved config pins them (values YAML cannot hold stay implicit)."""
    out = {}
    for key, value in _preset_options(model_name).items():
        if value is inspect.Parameter.empty:
            continue
        try:
            out[key] = _plain(value)
        except UserError:
            continue
    return out


def _check_finite(cfg: TrainConfig) -> None:
    """No NaN or infinity anywhere (``training.lr=nan`` passes every ``<= 0`` test)."""
    def walk(key: str, value: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key} must be a finite number, got {value}")
        if isinstance(value, (list, tuple)):
            for item in value:
                walk(key, item)
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(f"{key}.{name}", item)

    walk("model", cfg.model)
    for section in SECTION_TYPES:
        for item in dataclasses.fields(getattr(cfg, section)):
            walk(f"{section}.{item.name}", getattr(getattr(cfg, section), item.name))


def _validate(cfg: TrainConfig) -> None:
    t, h, d, lg = cfg.training, cfg.hardware, cfg.data, cfg.logging
    _check_finite(cfg)
    positive = {
        "training.max_steps": t.max_steps, "training.batch_size": t.batch_size,
        "training.accumulate_grad_batches": t.accumulate_grad_batches,
        "training.val_every_n_steps": t.val_every_n_steps, "data.crop_length": d.crop_length,
        "data.augment_factor": d.augment_factor, "logging.checkpoint_every_n_steps": lg.checkpoint_every_n_steps,
        "logging.log_every_n_steps": lg.log_every_n_steps, "hardware.num_nodes": h.num_nodes,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key} must be a positive integer, got {value}")
    if t.max_minutes is not None and not t.max_minutes > 0:
        raise UserError(f"training.max_minutes must be a positive number of minutes, got {t.max_minutes}")
    non_negative = {
        "training.warmup_steps": t.warmup_steps, "training.limit_val_batches": t.limit_val_batches,
        "training.grad_clip": t.grad_clip, "training.weight_decay": t.weight_decay,
        "data.num_workers": d.num_workers, "logging.log_images_every_n_steps": lg.log_images_every_n_steps,
        "logging.num_image_samples": lg.num_image_samples,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise UserError(f"{key} must be >= 0, got {value}")
    if t.lr <= 0:
        raise UserError(f"training.lr must be > 0, got {t.lr}")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        raise UserError(f"training.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}")
    if len(t.betas) != 2:
        raise UserError(f"training.betas must be two numbers, got {t.betas}")
    if len(d.pitch_shift) != 2 or d.pitch_shift[0] > d.pitch_shift[1]:
        raise UserError(f"data.pitch_shift must be [low, high] with low <= high, got {d.pitch_shift}")
    if h.precision not in PRECISIONS:
        raise UserError(f"hardware.precision must be one of {', '.join(PRECISIONS)}, got {h.precision!r}")
    if h.strategy not in STRATEGIES:
        close = difflib.get_close_matches(h.strategy, STRATEGIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"hardware.strategy {h.strategy!r} unknown{hint}; accepted: {', '.join(STRATEGIES)}")
    if t.grad_checkpointing and "grad_checkpointing" not in _preset_keys(cfg.model_name):
        raise UserError(f"training.grad_checkpointing: model {cfg.model_name!r} does not support activation checkpointing")


def build_config(raw: Mapping[str, Any]) -> TrainConfig:
    """Validate a raw config tree (sections of plain values) into a :class:`TrainConfig`."""
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), SECTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown config section {section!r}{hint}; sections are {', '.join(SECTIONS)}")
    model = _build_model(raw.get("model"))
    sections = {name: _build_section(name, raw.get(name), model[MODEL_NAME_KEY]) for name in SECTION_TYPES}
    cfg = TrainConfig(model=model, **sections)
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read ``path`` (or start from ``base``, e.g. a checkpoint's config) and apply ``overrides``."""
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        raw = load_yaml(path)
    return build_config(merge_overrides(raw, overrides))


def dump_yaml(config: TrainConfig | Mapping[str, Any]) -> str:
    """The resolved config as YAML text (sections in their canonical order)."""
    tree = config.to_dict() if isinstance(config, TrainConfig) else _plain(config)
    return yaml.safe_dump(tree, sort_keys=False)
