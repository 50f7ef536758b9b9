"""Loading a trained generator for inference (generate, evaluate, demo)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalmidi.data.draw import spread_quantiles
from fractalmidi.data.key import CHROMA_STEER_NEEDS_KEY, draw_shift, fit_shift, mean_pitch, normalising_shift, transpose
from fractalmidi.data.loudness import draw_loudness, move_loudness, normalising_move, piece_loudness
from fractalmidi.data.roll import VELOCITY_PLANE, codes_to_planes, planes_to_codes
from fractalmidi.data.style import draw_style, piece_style, style_label
from fractalmidi.errors import UserError
from fractalmidi.outdir import MANIFEST_FILE

DEFAULT_GRID = "16th"


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

    @property
    def key_shifts(self) -> list[int] | None:
        """With a key-normalised model (``data.key_normalize``), its training pieces' key counts
        (:mod:`fractalmidi.data.key`); None for a model trained in every key."""
        data = self.config.get("data", {})
        if not isinstance(data, dict) or not data.get("key_normalize"):
            return None
        return [int(c) for c in data.get("key_shifts") or []]

    @property
    def normalisation(self) -> dict[str, Any]:
        """:func:`sample_plan`'s keywords that move pieces out of the model's key and loudness."""
        return {"key_shifts": self.key_shifts, "key_register": self.key_register,
                "loudness_counts": self.loudness_counts}

    @property
    def key_register(self) -> list[float] | None:
        """With a key-normalised model, its training pieces' ``[mean, spread]`` of mean pitch (None where the
        checkpoint predates it: keys are then drawn without regard to register)."""
        data = self.config.get("data", {})
        if not isinstance(data, dict) or not data.get("key_normalize") or not data.get("key_register"):
            return None
        return [float(v) for v in data["key_register"]]

    @property
    def style_counts(self) -> list[int] | None:
        """With a style-labelled model (``data.style_labels``), how many training windows had each style label
        (:mod:`fractalmidi.data.style`); None for a model without them."""
        data = self.config.get("data", {})
        if not isinstance(data, dict) or not data.get("style_labels"):
            return None
        return [int(c) for c in data.get("style_counts") or []]

    @property
    def style_edges(self) -> list[list[float]] | None:
        """With a style-labelled model, the edges of its style bins (:func:`~fractalmidi.data.style.style_edges`)."""
        data = self.config.get("data", {})
        if not isinstance(data, dict) or not data.get("style_labels"):
            return None
        return [[float(v) for v in cuts] for cuts in data.get("style_edges") or []]

    @property
    def loudness_counts(self) -> list[int] | None:
        """With a loudness-normalised model (``data.loudness_normalize``), its training pieces' loudness counts
        (:mod:`fractalmidi.data.loudness`); None for a model trained at the pieces' own loudness."""
        data = self.config.get("data", {})
        if not isinstance(data, dict) or not data.get("loudness_normalize"):
            return None
        return [int(c) for c in data.get("loudness_counts") or []]


def load_checkpoint(path: str | Path, *, use_ema: bool = True) -> LoadedCheckpoint:
    """Load a ``.ckpt``, a run folder's last one or a shipped model by name (EMA weights by default).

    Any mismatch with this version becomes a one-line ``UserError``.
    """
    from fractalmidi.train.checkpoint import load_generator, resolve_checkpoint

    path = resolve_checkpoint(path)
    try:
        model, config = load_generator(path, use_ema=use_ema, map_location="cpu")
    except UserError:
        raise
    except Exception as err:  # a foreign or older checkpoint: name it, no traceback
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {path} does not match this version of fractalmidi: {first_line}") from None
    model.eval()
    return LoadedCheckpoint(path=path, model=model, config=dict(config or {}))


def _quantiles(count: int, generator, device) -> np.ndarray:
    """:func:`spread_quantiles` for a batch, seeded from the torch ``generator`` (fresh entropy without one),
    so seeded runs repeat."""
    import torch

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device)) if generator else None
    return spread_quantiles(count, np.random.default_rng(seed))


def _out_of_key(result, steps: list, into_key: int, key_shifts: list[int], anchored: bool, generator,
                register: list[float] | None = None) -> tuple:
    """Samples (and their steps) moved back out of the model's key: by ``-into_key`` when known music
    fixed the key (``anchored``), else each to a key drawn from ``key_shifts`` and its ``register``."""
    import torch

    if anchored:
        return transpose(result, -into_key), [transpose(step, -into_key) for step in steps]
    moves = []
    for sample, quantile in zip(result, _quantiles(result.shape[0], generator, result.device)):
        sounding = (sample[VELOCITY_PLANE] > 0).cpu().numpy().astype(np.uint8)
        moves.append(fit_shift(sounding, draw_shift(key_shifts, quantile, mean_pitch(sounding), register)))
    def move(batch):
        return torch.stack([transpose(x, m) for x, m in zip(batch, moves)])
    return move(result), [move(step) for step in steps]


def _move_velocities(planes, moves: list[int]):
    """Planes ``(B, 2, 128, T)`` with each sample's velocities moved by its move (clipped to 1..127)."""
    import torch

    codes = planes_to_codes(planes.cpu().numpy())
    moved = np.stack([move_loudness(c, m) for c, m in zip(codes, moves)])
    return torch.from_numpy(codes_to_planes(moved)).to(planes)


def _to_loudness(result, steps: list, into: int, counts: list[int], anchored: bool, generator) -> tuple:
    """Samples (and their steps) moved from the model's loudness: by ``-into`` when known music fixed it
    (``anchored``), else each to a loudness drawn from ``counts``."""
    if anchored:
        moves = [-into] * result.shape[0]
    else:
        own = [piece_loudness(c) for c in planes_to_codes(result.cpu().numpy())]
        quantiles = _quantiles(len(own), generator, result.device)
        moves = [0 if level is None else draw_loudness(counts, q) - level for level, q in zip(own, quantiles)]
    return _move_velocities(result, moves), [_move_velocities(step, moves) for step in steps]


def style_labels(plan, count: int, generator, device, style_counts: list[int] | None,
                 style_edges: list[list[float]] | None):
    """Labels ``(count,)`` for a style-labelled model (None without ``style_counts``): the style of the known music
    where the plan has any, else drawn with the training windows' frequencies, spread over the batch
    (:mod:`fractalmidi.data.draw`)."""
    import torch

    if not style_counts or not style_edges:
        return None
    known = planes_to_codes((plan.canvas[0] * ~plan.mask[0]).numpy())
    style = piece_style(known)
    if style is not None:
        chosen = [style_label(style, style_edges)] * count
    else:
        chosen = [draw_style(style_counts, q) for q in _quantiles(count, generator, device)]
    return torch.tensor(chosen, dtype=torch.long, device=device)


def sample_plan(model, plan, count: int = 1, *, generator=None, labels=None, options: dict[str, Any] | None = None,
                return_steps: bool = False, key_shifts: list[int] | None = None,
                key_register: list[float] | None = None, loudness_counts: list[int] | None = None):
    """``count`` samples of a plan (:mod:`fractalmidi.canvas`) on the model's device.

    Returns ``(results, steps)``: results ``(count, planes, 128, plan.length)`` with the known
    pixels exactly as in the canvas, and, with ``return_steps``, the intermediate canvases
    (coarse to fine, each cropped the same way; else ``[]``). Option values the family rejects
    become a one-line ``UserError``. ``key_shifts`` (a key-normalised model's
    :attr:`LoadedCheckpoint.key_shifts`): the known music is moved into the model's key and the
    result back; with nothing known, each sample goes to a key drawn like the training pieces', weighed by
    ``key_register`` (:attr:`LoadedCheckpoint.key_register`) where given, the batch's keys spread over those
    frequencies (:mod:`fractalmidi.data.draw`).
    ``loudness_counts`` (:attr:`LoadedCheckpoint.loudness_counts`): the same for loudness.
    A style-labelled model's ``labels`` come from :func:`style_labels` (callers draw them, so they can name them).
    """
    import torch

    if any({**model.sample_defaults, **(options or {})}.get("chroma_steer") or ()) and key_shifts is None:
        raise UserError(CHROMA_STEER_NEEDS_KEY)  # passed now or stored in the checkpoint
    device = next(model.parameters()).device
    canvas = plan.canvas.to(device).expand(count, -1, -1, -1).contiguous()
    mask = plan.mask.to(device).expand(count, -1, -1, -1).contiguous()
    into_key = 0
    if key_shifts is not None:
        known = ((plan.canvas[0, VELOCITY_PLANE] > 0) & ~plan.mask[0, VELOCITY_PLANE]).numpy().astype(np.uint8)
        into_key = normalising_shift(known)
    into_loudness, loud_input = 0, False
    if loudness_counts is not None:
        known_codes = planes_to_codes((plan.canvas[0] * ~plan.mask[0]).numpy())
        into_loudness, loud_input = normalising_move(known_codes), piece_loudness(known_codes) is not None
    model_canvas = _move_velocities(canvas, [into_loudness] * count) if into_loudness else canvas
    try:
        with torch.no_grad():
            out = model.sample(transpose(model_canvas, into_key), transpose(mask, into_key), labels=labels,
                               generator=generator, return_steps=return_steps,
                               **(options or {}))
    except ValueError as err:  # the family's own check of option values (e.g. sampler name)
        raise UserError(f"sampling options rejected by the {model.family} family: {str(err).splitlines()[0]}") from None
    result, steps = out if return_steps else (out, [])
    if key_shifts is not None:
        result, steps = _out_of_key(result, steps, into_key, key_shifts, bool(known.any()), generator, key_register)
    if loudness_counts is not None:
        result, steps = _to_loudness(result, steps, into_loudness, loudness_counts, loud_input, generator)
    result = torch.where(mask, result, canvas)  # known pixels exactly as given, whatever the model did
    return result[..., : plan.length], [step[..., : plan.length] for step in steps]
