"""Training configuration: a preset or YAML file + dotted ``key=value`` overrides -> validated dataclasses.

A config file holds only its differences from a named preset (``preset: fractal-small``, then
sections). Preset names are one namespace: a model preset of the registry (the model with the
default training settings) or a config file in ``configs/`` (by its name without ``.yaml``).
Every key is checked against the section dataclasses below and ``model.*`` against the
family's option dataclasses, so a typo is a one-line error naming the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fractalmidi.data.grid import CROP_ALIGNS
from fractalmidi.data.key import CHROMA_STEER_NEEDS_KEY
from fractalmidi.data.loudness import LOUDNESS_CENTER
from fractalmidi.data.style import STEER_OPTIONS, STYLE_CLASSES
from fractalmidi.errors import UserError
from fractalmidi.options import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    UNIT,
    Bound,
    check_values,
    coerce_values,
    names,
    option,
    plain,
)

SECTIONS = ("model", "data", "training", "hardware", "logging")
PRESET_KEY = "preset"
"""Top-level key of a config file: the preset its sections change."""
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The config presets, inside the package (a source checkout links them as ./configs)."""
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")
MODEL_NAME_KEY = "name"
SEED_NAMES = "seed_names"
"""Field metadata: the names the seed projects' configs / flags used for this key."""


PAIR = Bound("two numbers", lambda v: len(v) == 2)
SPAN = Bound("[low, high] with low <= high", lambda v: len(v) == 2 and v[0] <= v[1])


@dataclass
class DataConfig:
    """Where the prepared data lives and how training crops are drawn."""

    root: str = option("", "a folder made by `fractalmidi prepare`")
    crop_length: int = option(256, "training crop length in time steps", bound=POSITIVE_INT)
    val_crop_length: int | None = option(None, "validation crop length; null = crop_length")
    train_split: str = option("train", "split trained on")
    val_split: str = option("valid", "split validated on")
    pitch_shift: list[int] = option([0, 0], "random transposition of training crops, [low, high] semitones (off by "
                                    "default: it would undo key_normalize)", bound=SPAN,
                                    seed_names=("pitch_shift_min", "pitch_shift_max"))
    key_normalize: bool = option(True, "train in C major / A minor (each piece transposed by its estimated key); "
                                 "generated pieces move to keys drawn from key_shifts")
    key_shifts: list[int] | None = option(None, "filled at train time with key_normalize: how many training pieces "
                                          "needed each normalising shift (-6..5), so a checkpoint can pick keys like "
                                          "its data's without the data folder")
    key_register: list[float] | None = option(None, "filled at train time with key_normalize: the training pieces' "
                                              "mean pitch in their own keys and its spread (semitones), so generated "
                                              "pieces move to keys that keep them in that register")
    loudness_normalize: bool = option(False, "train at one loudness (each piece's velocities moved so their mean is "
                                      f"{LOUDNESS_CENTER}); generated pieces move to a loudness drawn from "
                                      "loudness_counts")
    loudness_counts: list[int] | None = option(None, "filled at train time with loudness_normalize: how many "
                                               "training pieces had each loudness (mean note velocity 0..127), so "
                                               "a checkpoint can pick loudness like its data's")
    style_labels: bool = option(False, "give the model each training crop's style as a class label (its onset "
                                "rate and chromaticism, each low / middle / high at the terciles of the training "
                                "pieces' crop-length windows: "
                                f"{STYLE_CLASSES} labels, model.num_classes set to match); generated pieces take "
                                "a label drawn from style_counts, the label of the music they continue, or --label")
    style_edges: list[list[float]] | None = option(None, "filled at train time with style_labels: the terciles of "
                                                   "the training windows' onset rate and chromaticism")
    style_counts: list[int] | None = option(None, "filled at train time with style_labels: how many training "
                                            "windows had each style label")
    crop_align: str = option("step", "crops start on a whole step | beat | bar of the data's grid (beat and bar are "
                             "one step on an fps grid; beat: the model learns where beats fall)", choices=CROP_ALIGNS)
    augment_factor: int = option(1, "crops drawn per piece and epoch", bound=POSITIVE_INT)
    num_workers: int = option(2, "data loader processes", bound=NON_NEGATIVE)
    val_batch_size: int | None = option(None, "null = training.batch_size", seed_names=("val_batch_size",))
    grid: str | None = option(None, "time grid of the rolls; filled from the prepared data's manifest, so a "
                              "checkpoint knows its grid without the data folder (must match the data when given)")


@dataclass
class TrainingConfig:
    """Optimisation: AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    max_steps: int = option(200_000, "optimizer steps", bound=POSITIVE_INT, seed_names=("epochs",))
    max_minutes: float | None = option(None, "wall-clock budget: stops at the clock (saving a resumable last.ckpt); "
                                       "the LR schedule follows the larger of step and time progress",
                                       bound=Bound("a positive number of minutes", lambda v: v > 0))
    init_from: str | None = option(None, "a fresh run starts from the weights of this checkpoint, run folder or "
                                   "shipped model (new optimizer and schedule; parts of the model it lacks keep "
                                   "their initial values); a resumed run ignores it")
    batch_size: int = option(8, "crops per step and device", bound=POSITIVE_INT, seed_names=("train_batch_size",))
    lr: float = option(1e-4, "peak learning rate", bound=POSITIVE, seed_names=("learning_rate",))
    weight_decay: float = option(0.05, "AdamW weight decay", bound=NON_NEGATIVE)
    betas: list[float] = option([0.9, 0.95], "AdamW betas", bound=PAIR)
    warmup_steps: int = option(2000, "linear warmup steps", bound=NON_NEGATIVE)
    decay_steps: int | None = option(None, "cosine schedule length; null = max_steps")
    min_lr_ratio: float = option(0.0, "the cosine's floor as a share of lr (1 = constant after warmup)", bound=UNIT)
    grad_clip: float = option(3.0, "gradient-norm clipping; 0 disables it", bound=NON_NEGATIVE,
                              seed_names=("grad_clip_val", "gradient_clip_val"))
    accumulate_grad_batches: int = option(1, "batches per optimizer step", bound=POSITIVE_INT,
                                          seed_names=("accumulate",))
    val_every_n_steps: int = option(2000, "validation interval", bound=POSITIVE_INT,
                                    seed_names=("val_check_interval_steps",))
    limit_val_batches: int = option(16, "validation batches per validation", bound=NON_NEGATIVE)
    seed: int = option(0, "random seed")
    fast_dev_run: bool = option(False, "one training and one validation batch, nothing written (a smoke test)")
    grad_checkpointing: bool = option(False, "activation checkpointing: compute for memory (if the model has it)",
                                      seed_names=("grad_checkpoint",))
    compile: bool = option(False, "torch.compile the training loss (GPU; slow to warm up on a CPU)")


@dataclass
class HardwareConfig:
    """Devices and numerics, passed to the Lightning ``Trainer``."""

    accelerator: str = option("auto", "auto | cpu | gpu | mps")
    devices: int | str | list[int] = option("auto", "auto, a count or a list of device indices",
                                                 seed_names=("gpus",))
    num_nodes: int = option(1, "machines", bound=POSITIVE_INT)
    precision: str = option("32", " | ".join(PRECISIONS),
                            bound=Bound(f"one of {', '.join(PRECISIONS)}", lambda v: v in PRECISIONS))
    strategy: str = option("auto", " | ".join(STRATEGIES))


@dataclass
class LoggingConfig:
    """The run folder and what goes into it."""

    output_dir: str = option("runs/default", "the run folder")
    overwrite: bool = option(False, "replace an existing run folder")
    checkpoint_every_n_steps: int = option(2000, "checkpoint interval", bound=POSITIVE_INT)
    log_every_n_steps: int = option(10, "metrics interval", bound=POSITIVE_INT)
    log_images_every_n_steps: int = option(5000, "sample image / GIF interval; 0 disables them", bound=NON_NEGATIVE)
    num_image_samples: int = option(2, "samples per image log", bound=NON_NEGATIVE)
    sample_length: int | None = option(None, "length of logged samples; null = data.crop_length")
    gif_frame_ms: int = option(150, "GIF frame duration")
    progress_bar: bool = option(True, "show a progress bar")


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "hardware": HardwareConfig,
    "logging": LoggingConfig,
}


@dataclass
class TrainConfig:
    """A whole experiment. ``model`` is ``{"name": preset, **every model and sampling option}``."""

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
        """Keyword options for ``fractalmidi.models.build`` (activation checkpointing included)."""
        overrides = {k: v for k, v in self.model.items() if k != MODEL_NAME_KEY}
        if self.training.grad_checkpointing:
            overrides["grad_checkpointing"] = True
        return overrides

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (str / numbers / lists / None only): safe in YAML and ``weights_only`` checkpoints."""
        return {"model": plain(self.model), **{name: plain(getattr(self, name)) for name in SECTION_TYPES}}


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
    """Read a config file; it must be a mapping."""
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


# ----- presets: one namespace of model presets and config files ---------------------------------


def config_presets() -> list[str]:
    """Names of the config files in ``configs/`` that are presets (not ``generate``'s defaults)."""
    if not CONFIGS_DIR.is_dir():
        return []
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml") if PRESET_KEY in load_yaml(p))


def preset_names() -> list[str]:
    """Every name ``preset:`` accepts: model presets and config presets, sorted."""
    from fractalmidi.models.registry import available

    return sorted(available() + config_presets())


def preset_tree(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw config tree a preset name stands for (a config file's ``preset:`` chain resolved)."""
    from fractalmidi.models.registry import available

    if name in seen:
        raise UserError(f"preset {name!r} includes itself: {' -> '.join((*seen, name))}")
    path = CONFIGS_DIR / f"{name}.yaml"
    if name in config_presets():
        return expand(load_yaml(path), (*seen, name))
    if name in available():
        return {"model": {MODEL_NAME_KEY: name}}
    close = difflib.get_close_matches(name, preset_names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"unknown preset {name!r}{hint}; presets: {', '.join(preset_names())}")


def expand(raw: Mapping[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A raw tree with its ``preset:`` replaced by that preset's tree, this tree's keys winning."""
    tree = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items() if k != PRESET_KEY}
    if PRESET_KEY not in raw:
        return tree
    base = preset_tree(str(raw[PRESET_KEY]), seen)
    given, inherited = (t["model"].get(MODEL_NAME_KEY) if isinstance(t.get("model"), Mapping) else None
                        for t in (tree, base))
    if given and given != inherited:
        base.pop("model", None)  # another model: the preset's model options are not its options
    for section, values in tree.items():
        if isinstance(values, Mapping) and isinstance(base.get(section), Mapping):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    return base


# ----- keys and values ----------------------------------------------------------------------------


def _model_family(model_name: str):
    from fractalmidi.models.registry import preset

    try:
        return preset(model_name).family
    except KeyError as err:
        raise UserError(f"model.name: {err.args[0]}") from None


def valid_keys(model_name: str | None = None) -> list[str]:
    """Every dotted key the schema accepts (``model.*`` from the preset's family when known)."""
    keys = [f"model.{MODEL_NAME_KEY}"]
    if model_name:
        keys += [f"model.{k}" for k in _model_family(model_name).option_names()]
    for section, cls in SECTION_TYPES.items():
        keys += [f"{section}.{name}" for name in names(cls)]
    return keys


def _renamed(model_name: str | None) -> dict[str, str]:
    """Old name -> the key that replaces it: the seed projects' names, and a family's renamed options."""
    out = {}
    for section, cls in SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            out.update({old: f"{section}.{f.name}" for old in f.metadata.get(SEED_NAMES, ())})
    if model_name:
        out.update({old: f"model.{new}" for old, new in _model_family(model_name).renamed.items()})
    return out


def _unknown_key(key: str, model_name: str | None) -> UserError:
    candidates = valid_keys(model_name)
    renamed = _renamed(model_name).get(key.rsplit(".", 1)[-1])
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


def _build_section(section: str, values: Any, model_name: str | None) -> Any:
    cls = SECTION_TYPES[section]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise UserError(f"config section {section!r} must be a mapping, got {values!r}")
    for key in values:
        if key not in names(cls):
            raise _unknown_key(f"{section}.{key}", model_name)
    return cls(**coerce_values(cls, values, f"{section}."))


def resolve_model(values: Any, stored: bool = False) -> dict[str, Any]:
    """The ``model`` section with every option of its preset, checked and coerced to the option types.

    ``stored``: a section a checkpoint wrote, whose options may go by the names of its day.
    """
    from fractalmidi.models.registry import preset_defaults, upgrade_stored

    if not isinstance(values, Mapping) or not values.get(MODEL_NAME_KEY):
        raise UserError("config section 'model' needs a preset name: model.name (see 'fractalmidi info')")
    name = str(values[MODEL_NAME_KEY])
    family = _model_family(name)
    given = {k: v for k, v in values.items() if k != MODEL_NAME_KEY}
    if stored:
        given = upgrade_stored(given, name)
    for key in given:
        if key not in family.option_names():
            raise _unknown_key(f"model.{key}", name)
    model_keys = set(names(family.options))
    coerced: dict[str, Any] = {}
    for cls, part in ((family.options, {k: v for k, v in given.items() if k in model_keys}),
                      (family.sampling, {k: v for k, v in given.items() if k not in model_keys})):
        values = coerce_values(cls, part, "model.")
        check_values(cls, values, lambda k: f"model.{k}")
        coerced.update(values)
    return {MODEL_NAME_KEY: name, **plain({**preset_defaults(name), **coerced})}


def _validate(cfg: TrainConfig) -> None:
    """Every value finite and within its field's bound; the strategy names its closest match."""
    for section, cls in SECTION_TYPES.items():
        check_values(cls, dataclasses.asdict(getattr(cfg, section)), lambda k, section=section: f"{section}.{k}")
    h = cfg.hardware
    if h.strategy not in STRATEGIES:
        close = difflib.get_close_matches(h.strategy, STRATEGIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"hardware.strategy {h.strategy!r} unknown{hint}; accepted: {', '.join(STRATEGIES)}")
    steers = [k for k in STEER_OPTIONS if any(np.atleast_1d(cfg.model.get(k) or 0))]
    if steers and not cfg.data.style_labels:
        raise UserError(f"model.{steers[0]} needs data.style_labels=true: it steers pieces by their style label")
    if "chroma_steer" in steers and not cfg.data.key_normalize:
        raise UserError(f"model.{CHROMA_STEER_NEEDS_KEY}")
    if cfg.training.grad_checkpointing and "grad_checkpointing" not in cfg.model:
        raise UserError(f"training.grad_checkpointing: model {cfg.model_name!r} does not support activation "
                        "checkpointing")


def build_config(raw: Mapping[str, Any], stored: bool = False) -> TrainConfig:
    """Validate a raw config tree (sections of plain values, ``preset:`` resolved) into a :class:`TrainConfig`."""
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), (*SECTIONS, PRESET_KEY), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown config section {section!r}{hint}; sections are {', '.join(SECTIONS)}")
    model = resolve_model(raw.get("model"), stored)
    sections = {name: _build_section(name, raw.get(name), model[MODEL_NAME_KEY]) for name in SECTION_TYPES}
    cfg = TrainConfig(model=model, **sections)
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read ``path`` (a YAML file or a preset name; or start from ``base``, a checkpoint's config) and
    apply ``overrides``."""
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        is_file = Path(path).is_file() or Path(path).suffix or len(Path(path).parts) > 1
        raw = load_yaml(path) if is_file else {PRESET_KEY: str(path)}
    return build_config(merge_overrides(expand(raw), overrides), stored=base is not None and path is None)


def dump_yaml(config: TrainConfig | Mapping[str, Any]) -> str:
    """The resolved config as YAML text (sections in their canonical order)."""
    tree = config.to_dict() if isinstance(config, TrainConfig) else plain(config)
    return yaml.safe_dump(tree, sort_keys=False)
