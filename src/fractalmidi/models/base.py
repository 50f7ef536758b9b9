"""The model contract shared by every generator family.

Training, generation and evaluation only talk to this interface, so a new family is one
new package that subclasses :class:`Generator`, declares its model and sampling options as
dataclasses, and registers itself and its presets (:mod:`fractalmidi.models.registry`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from fractalmidi.data.roll import MAX_VELOCITY, NUM_PITCHES, ONSET_PLANE, ROLL_PLANES, VELOCITY_PLANE
from fractalmidi.options import plain

MAX_ITERATIONS = 10_000
"""Most sampling iterations per level / ODE steps a sampling option may ask for."""
MAX_JITTER_COLUMNS = 1024
"""Most columns a training option ``position_jitter`` may shift positions by: the positions table grows with it."""
DEFAULT_NOTE_VELOCITY = 64
"""Velocity of a generated note that has none of its own (e.g. a sampled hold after silence):
MIDI's customary default."""


class Generator(nn.Module):
    """A generative model of piano-rolls: float planes ``(B, 2, 128, T)``, velocity / 127 held over each
    note and the onset flag (see :mod:`fractalmidi.data.roll`).

    Subclasses set :attr:`family`, :attr:`has_likelihood`, :attr:`length_multiple` and
    :attr:`ema_decays` and implement :meth:`loss` and :meth:`sample` (and :meth:`nll`
    when they have a tractable likelihood).
    """

    family: ClassVar[str] = "base"
    has_likelihood: ClassVar[bool] = False
    preset: str = ""
    """Registry name this model was built from (set by :func:`fractalmidi.models.build`)."""
    options: Any
    """The family's model options dataclass this model was built with."""
    sampling: Any
    """The family's sampling options dataclass: the defaults of :meth:`sample`."""
    num_pitches: int = NUM_PITCHES
    """Roll height the model takes (fewer only in micro test configurations)."""

    @property
    def length_multiple(self) -> int:
        """Every time length T must be a multiple of this (no maximum)."""
        return 1

    @property
    def modelled_rows(self) -> range:
        """The pitch rows the model writes and scores (all unless a family narrows them)."""
        return range(self.num_pitches)

    @property
    def ema_decays(self) -> tuple[float, ...]:
        """EMA decays the trainer should keep for this model; empty = no EMA."""
        return ()

    @property
    def sample_defaults(self) -> dict[str, Any]:
        """Default ``sample`` options (documented in the family's sampling dataclass)."""
        return plain(self.sampling)

    @property
    def estimate_reason(self) -> str | None:
        """Why :meth:`nll` is an estimate, in a few words (None: it is exact)."""
        return "the model's own estimator"

    @property
    def frame_by_frame(self) -> bool:
        """Whether :meth:`nll`'s ``frame_nats`` are exact conditionals of each time step given the
        steps before it (the model reads whole frames in time order)."""
        return False

    def sampling_options(self, opts: Mapping[str, Any], error: type[Exception] = ValueError) -> Any:
        """The sampling defaults with ``opts`` on top (None = the default); an unknown name is an ``error``."""
        given = {k: v for k, v in opts.items() if v is not None}
        accepted = [f.name for f in dataclasses.fields(self.sampling)]
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise error(f"unknown {type(self).__name__} sample options {unknown}; accepted: {', '.join(accepted)}")
        return dataclasses.replace(self.sampling, **given)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             edges: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on a batch; returns ``(total, parts)`` with every part named. ``edges`` ``(B, 2)`` bool:
        whether each crop begins at its piece's first step and holds its last (the dataset sends them only for a
        model option ``edge_crops`` above 0, :class:`~fractalmidi.data.PianoRollDataset`)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        canvas: torch.Tensor,
        mask: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_steps: bool = False,
        **opts: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Fill ``canvas`` where ``mask`` is True; pixels where it is False come back bit-identical.

        ``opts`` are the family's sampling options (its sampling dataclass; unset ones take the
        model's defaults). With ``return_steps`` also returns the intermediate canvases (coarse to
        fine), each ``(B, 2, 128, T)``, for generation GIFs.
        """
        options = self.checked_sampling(opts)
        self.check_canvas(canvas, mask)
        return self._sample(canvas, mask, options, labels=labels, generator=generator, return_steps=return_steps)

    def checked_sampling(self, opts: Mapping[str, Any]) -> Any:
        """The complete sampling options for ``opts``; a family adds the checks its sampler needs."""
        return self.sampling_options(opts)

    def _sample(self, canvas: torch.Tensor, mask: torch.Tensor, options: Any, *, labels: torch.Tensor | None,
                generator: torch.Generator | None, return_steps: bool) -> Any:
        """The family's sampler, on a checked canvas with complete ``options`` (see :meth:`sample`)."""
        raise NotImplementedError

    def adopt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another model's weights made fit for this one where a family knows how (e.g. an unconditional model's
        start vector for every class label), for fine-tuning (``training.init_from``); as given by default."""
        return state

    def nll(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative log-likelihood: ``bits_per_pixel`` and ``nats_per_step`` (per sample)."""
        raise NotImplementedError(f"the {self.family} family has no tractable likelihood")

    def parameter_table(self) -> list[tuple[str, int]]:
        """Parameter counts per named part (levels, embeddings...), for ``fractalmidi info``."""
        return [(name, sum(p.numel() for p in child.parameters())) for name, child in self.named_children()]

    def check_length(self, length: int) -> None:
        """Raise a ``ValueError`` naming the accepted values when ``length`` is not usable."""
        if length <= 0 or length % self.length_multiple:
            raise ValueError(f"length {length} is not a positive multiple of {self.length_multiple}")

    def check_rolls(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is ``(B, 2, num_pitches, T)`` with a usable ``T``."""
        if x.dim() != 4 or x.shape[1] != ROLL_PLANES or x.shape[2] != self.num_pitches:
            raise ValueError(f"expected rolls (B, {ROLL_PLANES}, {self.num_pitches}, T), got {tuple(x.shape)}")
        self.check_length(x.shape[-1])

    def check_canvas(self, canvas: torch.Tensor, mask: torch.Tensor) -> None:
        """:meth:`check_rolls` on ``canvas``, and ``mask`` a bool tensor of its shape (``sample``'s inputs)."""
        self.check_rolls(canvas)
        if mask.shape != canvas.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of the canvas' shape {tuple(canvas.shape)}")


def keep_known(result: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy the known pixels of ``canvas`` into ``result`` so they come back bit-identical."""
    return torch.where(mask, result, canvas)


def note_starts(sounding: torch.Tensor, onset: torch.Tensor) -> torch.Tensor:
    """Where notes start ``(B, H, W)`` bool: a sounding pixel with an onset, or after silence."""
    before = torch.nn.functional.pad(sounding[..., :-1], (1, 0))
    return sounding & (onset | ~before)


def decode_notes(canvas: torch.Tensor, mask: torch.Tensor, sounding: torch.Tensor, onset: torch.Tensor,
                 velocity: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Roll planes ``(B, 2, H, W)`` of whole notes from a model's per-pixel output where ``mask`` is set.

    ``sounding``/``onset`` ``(B, H, W)`` bool say where generated notes sound and start (a sounding
    pixel after silence starts one too); elsewhere the known ``canvas`` says it. A note with known
    pixels keeps their velocity (so notes outside a rewritten region sound as before, and a
    generated hold continues a known note); any other note takes the ``weight``-weighted mean of
    ``velocity`` (in [0, 1]) over its generated pixels; where those weights sum to 0 (a generated
    hold after silence), the weighted mean over its sample's generated pixels (the piece's own
    loudness), else :data:`DEFAULT_NOTE_VELOCITY`. Known pixels come back as in ``canvas``.
    """
    gen = mask[:, 0]
    sounding = torch.where(gen, sounding, canvas[:, VELOCITY_PLANE] > 0)
    onset = torch.where(gen, onset, canvas[:, ONSET_PLANE] > 0.5)
    velocity = torch.where(gen, velocity, canvas[:, VELOCITY_PLANE])
    start = note_starts(sounding, onset)
    note = torch.cumsum(start.reshape(-1).long(), 0).reshape(start.shape) * sounding  # 0 = no note
    count = int(note.max()) + 1 if note.numel() else 1
    flat = note.reshape(-1)

    def weighted_mean(w: torch.Tensor, groups: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per group (a note, or a whole piece) the ``w``-weighted mean velocity of its sounding pixels."""
        w = (w * sounding).reshape(-1).double()
        total = torch.zeros(size, dtype=torch.float64, device=canvas.device).index_add_(0, groups, w)
        summed = torch.zeros_like(total).index_add_(0, groups, w * velocity.reshape(-1).double())
        return summed / total.clamp_min(1e-12), total

    generated_weight = torch.where(gen, weight, torch.zeros_like(weight))
    known_mean, known_total = weighted_mean((~gen).to(weight.dtype), flat, count)
    generated_mean, generated_total = weighted_mean(generated_weight, flat, count)
    # a note with no velocity of its own (a bare hold) takes its piece's generated loudness
    pieces = note.shape[0]
    piece_of_pixel = torch.arange(pieces, device=canvas.device).repeat_interleave(note[0].numel())
    piece_mean, piece_total = weighted_mean(generated_weight, piece_of_pixel, pieces)
    no_loudness = torch.full_like(piece_mean, DEFAULT_NOTE_VELOCITY / MAX_VELOCITY)
    piece_level = torch.where(piece_total > 0, piece_mean, no_loudness)
    note_batch = torch.zeros(count, dtype=torch.long, device=canvas.device).index_put_((flat,), piece_of_pixel)
    default = piece_level[note_batch]
    mean = torch.where(known_total > 0, known_mean, torch.where(generated_total > 0, generated_mean, default))
    level = (torch.round(mean.clamp(1 / MAX_VELOCITY, 1) * MAX_VELOCITY) / MAX_VELOCITY).to(canvas.dtype)
    planes = torch.stack([torch.where(sounding, level[note], torch.zeros_like(level[note])), start.to(canvas.dtype)], 1)
    return keep_known(planes, canvas, mask)
