"""Loading a trained generator for inference (generate, evaluate, demo)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalmidi.errors import UserError

DEFAULT_GRID = "16th"
MANIFEST_FILE = "manifest.json"


@dataclass
class LoadedCheckpoint:
    """A generator in eval mode with the resolved config it was trained with."""

    path: Path
    model: Any
    config: dict

    @property
    def grid(self) -> str:
        """The time grid of the model's rolls: ``data.grid`` in the config, else the grid in the
        manifest of the prepared data it was trained on, else the default 16th grid."""
        data = self.config.get("data", {})
        if not isinstance(data, dict):
            return DEFAULT_GRID
        if data.get("grid"):
            return str(data["grid"])
        manifest = Path(str(data.get("root", ""))) / MANIFEST_FILE
        if data.get("root") and manifest.is_file():
            try:
                return str(json.loads(manifest.read_text()).get("grid", DEFAULT_GRID))
            except ValueError:
                return DEFAULT_GRID
        return DEFAULT_GRID


def load_checkpoint(path: str | Path, *, use_ema: bool = True) -> LoadedCheckpoint:
    """Load a ``.ckpt``, a run folder's last one or a shipped model by name (EMA weights by default).

    Any mismatch with this version becomes a one-line ``UserError``.
    """
    from fractalmidi.pretrained import resolve
    from fractalmidi.train.checkpoint import CHECKPOINT_DIR, LAST_NAME, load_generator

    path = resolve(path)
    if path.is_dir():  # a run folder: its last checkpoint
        if not (path / CHECKPOINT_DIR / LAST_NAME).is_file():
            raise UserError(f"run folder {path} has no {CHECKPOINT_DIR}/{LAST_NAME}; pass a .ckpt file")
        path = path / CHECKPOINT_DIR / LAST_NAME
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")

    try:
        model, config = load_generator(path, use_ema=use_ema, map_location="cpu")
    except UserError:
        raise
    except Exception as err:  # a foreign or older checkpoint: name it, no traceback
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {path} does not match this version of fractalmidi: {first_line}") from None
    model.eval()
    return LoadedCheckpoint(path=path, model=model, config=dict(config or {}))


def sample_plan(model, plan, count: int = 1, *, generator=None, labels=None, options: dict[str, Any] | None = None,
                return_steps: bool = False):
    """``count`` samples of a plan (:mod:`fractalmidi.canvas`) on the model's device.

    Returns ``(results, steps)``: results ``(count, planes, 128, plan.length)`` with the known
    pixels exactly as in the canvas, and, with ``return_steps``, the intermediate canvases
    (coarse to fine, each cropped the same way; else ``[]``). Option values the family rejects
    become a one-line ``UserError``.
    """
    import torch

    device = next(model.parameters()).device
    canvas = plan.canvas.to(device).expand(count, -1, -1, -1).contiguous()
    mask = plan.mask.to(device).expand(count, -1, -1, -1).contiguous()
    try:
        with torch.no_grad():
            out = model.sample(canvas, mask, labels=labels, generator=generator, return_steps=return_steps,
                               **(options or {}))
    except ValueError as err:  # the family's own check of option values (e.g. sampler name)
        raise UserError(f"sampling options rejected by the {model.family} family: {str(err).splitlines()[0]}") from None
    result, steps = out if return_steps else (out, [])
    result = torch.where(mask, result, canvas)  # known pixels exactly as given, whatever the model did
    return result[..., : plan.length], [step[..., : plan.length] for step in steps]
