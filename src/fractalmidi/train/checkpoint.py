"""Checkpoints: atomic writes, safe loading (``weights_only=True``) and a model loader.

A checkpoint is Lightning's dict plus ``checkpoint["fractalmidi"]``: the resolved config,
package versions, EMA weights, data position and RNG states, all plain tensors / numbers /
strings, so it loads with ``torch.load(weights_only=True)`` and no pickled objects.
"""

from __future__ import annotations

import dataclasses
import pickle
import platform
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fractalmidi.errors import UserError
from fractalmidi.outdir import atomic_open, sweep_stale_files

EXTRA_KEY = "fractalmidi"
"""Where our own entries live inside a Lightning checkpoint."""
FORMAT_VERSION = 1
MODEL_PREFIX = "model."
"""The LightningModule holds the generator as ``self.model``."""
CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.ckpt"


def package_versions() -> dict[str, str]:
    """Versions that decide whether a checkpoint is reproducible elsewhere."""
    import lightning
    import numpy

    from fractalmidi import __version__

    versions = {"fractalmidi": __version__, "torch": torch.__version__, "lightning": lightning.__version__,
                "numpy": numpy.__version__, "python": platform.python_version()}
    return {name: str(v) for name, v in versions.items()}  # torch's version is a str subclass: not weights_only-safe


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`fractalmidi.outdir.atomic_open` (synced): never half-written."""
    path = Path(path)
    sweep_stale_files(path.parent)  # what a killed save left (a 0-byte or torn .tmp)
    with atomic_open(path, "wb", durable=True) as handle:
        torch.save(obj, handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes atomically and loads with ``weights_only=True``.

    A SIGKILL during a save leaves the previous checkpoint intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return safe_load(path, map_location=map_location)


def safe_load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or foreign file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # PyTorch's text would suggest weights_only=False: never do that
        raise UserError(f"{str(path)!r} is not a safe FractalMIDI checkpoint: it holds pickled Python objects "
                        f"(which can run code when loaded), and fractalmidi only loads plain tensors and numbers"
                        ) from None
    except Exception as err:  # not a zip / torch file at all, truncated, unreadable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{str(path)!r} is not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or EXTRA_KEY not in ckpt:
        raise UserError(f"{str(path)!r} is not a FractalMIDI training checkpoint (no {EXTRA_KEY!r} entry)")
    return ckpt


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file meant by ``path``: a file as it is, a run folder's
    ``checkpoints/last.ckpt``, or the shipped model of that name (the one place that decides)."""
    from fractalmidi.pretrained import resolve

    path = resolve(path)
    if path.is_dir():
        last = path / CHECKPOINT_DIR / LAST_NAME
        if not last.is_file():
            raise UserError(f"run folder {path} has no {CHECKPOINT_DIR}/{LAST_NAME}; pass a .ckpt file")
        return last
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    return path


def check_same_model(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """A resumed run must build the model it saved: name every setting that differs. Sampling defaults
    (e.g. ``model.temperature``) and training-only settings (e.g. ``model.dropout``) may change: they shape
    what the model writes or how it learns, not which weights it has. An option newer than the checkpoint
    counts as its default, which is what the checkpoint's model was built with."""
    from fractalmidi.models.registry import preset
    from fractalmidi.options import TRAINING_ONLY, defaults, names, plain

    free: set[str] = set()
    if "name" in saved:
        family = preset(str(saved["name"])).family
        free = set(names(family.sampling)) | {f.name for f in dataclasses.fields(family.options)
                                               if f.metadata.get(TRAINING_ONLY)}
        saved = {**{k: plain(v) for k, v in defaults(family.options).items()}, **saved}
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in free)
    if diff:
        detail = ", ".join(f"model.{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in diff)
        raise UserError(f"cannot resume: the checkpoint was trained with a different model ({detail})")


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` -> ``RUN``)."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == CHECKPOINT_DIR else parent


def generator_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's own weights from the LightningModule's state dict."""
    return {k[len(MODEL_PREFIX):]: v for k, v in state_dict.items() if k.startswith(MODEL_PREFIX)}


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights; a mismatch is a ``UserError`` naming the keys and shapes that differ."""
    check_state_shapes(model, state, source)
    model.load_state_dict(state)


def check_state_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                       allow_missing: bool = False) -> None:
    """Same keys and shapes in ``model`` and ``state`` (works on a meta-device model), else a
    ``UserError`` naming what differs; ``allow_missing``: ``state`` may lack some of the model's keys."""
    own = model.state_dict()
    missing = [] if allow_missing else sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"shape differs for {len(shapes)} (e.g. {'; '.join(shapes[:3])})")
    if problems:
        raise UserError(f"{source} does not match the model: " + "; ".join(problems))


def init_weights(model: torch.nn.Module, source: str | Path) -> list[str]:
    """Copy the generator weights of checkpoint ``source`` (EMA ones when kept) into ``model``, for a fresh run
    that fine-tunes them, as the model adopts them (:meth:`~fractalmidi.models.base.Generator.adopt_state`);
    parameters it lacks (parts that newer options add) keep their initial values and are returned by name, so
    the user learns what did not come from ``source``. Any other difference is a ``UserError``."""
    trained, _ = load_generator(source)
    state = model.adopt_state(trained.state_dict())
    check_state_shapes(model, state, f"training.init_from {str(source)!r}", allow_missing=True)
    model.load_state_dict(state, strict=False)
    return sorted(set(model.state_dict()) - set(state))


def load_generator(path: str | Path, *, use_ema: bool = True, map_location: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the trained generator from a checkpoint (EMA weights when kept and ``use_ema``).

    Returns ``(generator in eval mode, resolved config dict)``.
    """
    from fractalmidi.models import build
    from fractalmidi.models.registry import upgrade_stored

    path = resolve_checkpoint(path)
    ckpt = safe_load(path, map_location=map_location)
    extra = ckpt[EXTRA_KEY]
    config = extra["config"]
    model_cfg = dict(config["model"])
    name = model_cfg.pop("name")
    model_cfg.pop("grad_checkpointing", None)  # a training-time memory option
    state = generator_state(ckpt["state_dict"])
    try:
        model_cfg = upgrade_stored(model_cfg, name)  # options renamed since the checkpoint was written
        with torch.device("meta"):  # sizes only, no memory: a config asking for huge widths is caught here
            shape_only = build(name, **model_cfg)
        check_state_shapes(shape_only, state, f"checkpoint {str(path)!r}")
        model = build(name, **model_cfg)
    except KeyError as err:
        raise UserError(f"checkpoint {str(path)!r}: {err.args[0]}") from None
    except (TypeError, ValueError) as err:
        first = str(err).splitlines()[0]
        raise UserError(f"checkpoint {str(path)!r}: its model config is not valid ({first})") from None
    load_state_strict(model, state, f"checkpoint {str(path)!r}")
    ema_state = extra.get("ema")
    if use_ema and ema_state is not None:
        from fractalmidi.models.ema import EMA

        ema = EMA(model, tuple(extra["ema_decays"]))
        ema.load_state_dict(ema_state)
        ema.copy_to(model, index=0)
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval(), config
