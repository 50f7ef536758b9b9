"""The model contract shared by every generator family.

Training, generation and evaluation only talk to this interface, so a new family is one
new package that subclasses :class:`Generator` and registers presets.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

NUM_PITCHES = 128
"""Piano-roll height: one row per MIDI pitch (row 0 = pitch 0)."""


class Generator(nn.Module):
    """A generative model of piano-rolls ``(B, 1, 128, T)`` with values in ``[0, 1]``.

    Subclasses set :attr:`family`, :attr:`has_likelihood`, :attr:`length_multiple` and
    :attr:`ema_decays` and implement :meth:`loss` and :meth:`sample` (and :meth:`nll`
    when they have a tractable likelihood).
    """

    family: ClassVar[str] = "base"
    has_likelihood: ClassVar[bool] = False
    preset: str = ""
    """Registry name this model was built from (set by :func:`fractalmidi.models.build`)."""
    overrides: dict[str, Any]
    """Keyword overrides applied on top of the preset (set by ``build``)."""
    num_pitches: int = NUM_PITCHES
    """Roll height the model takes (fewer only in micro test configurations)."""

    @property
    def length_multiple(self) -> int:
        """Every time length T must be a multiple of this (no maximum)."""
        return 1

    @property
    def ema_decays(self) -> tuple[float, ...]:
        """EMA decays the trainer should keep for this model; empty = no EMA."""
        return ()

    @property
    def sample_defaults(self) -> dict[str, Any]:
        """Default ``sample`` options (documented per family)."""
        return {}

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on a batch; returns ``(total, parts)`` with every part named."""
        raise NotImplementedError

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

        With ``return_steps`` also returns the intermediate canvases (coarse to fine), each
        ``(B, 1, 128, T)`` in ``[0, 1]``, for generation GIFs.
        """
        raise NotImplementedError

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
        """Raise a ``ValueError`` unless ``x`` is ``(B, 1, num_pitches, T)`` with a usable ``T``."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.num_pitches:
            raise ValueError(f"expected rolls (B, 1, {self.num_pitches}, T), got {tuple(x.shape)}")
        self.check_length(x.shape[-1])

    def check_canvas(self, canvas: torch.Tensor, mask: torch.Tensor) -> None:
        """:meth:`check_rolls` on ``canvas``, and ``mask`` a bool tensor of its shape (``sample``'s inputs)."""
        self.check_rolls(canvas)
        if mask.shape != canvas.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of the canvas' shape {tuple(canvas.shape)}")


def keep_known(result: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy the known pixels of ``canvas`` into ``result`` so they come back bit-identical."""
    return torch.where(mask, result, canvas)
