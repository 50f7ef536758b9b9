"""Exponential moving averages of a model's parameters, one shadow copy per decay.

Sampling with averaged weights is what makes diffusion / flow models (JiT) produce clean
results; the trainer keeps an :class:`EMA` next to the model, calls :meth:`EMA.update`
after every optimizer step, saves :meth:`EMA.state_dict` in checkpoints and swaps the
averaged weights in (:meth:`EMA.swapped_in`) to sample or validate.

Update rule, per parameter ``p`` and decay ``d``: ``shadow = d * shadow + (1 - d) * p``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class EMA:
    """Shadow copies of ``model``'s parameters for each decay in ``decays`` (e.g. 0.9996, 0.9998).

    Shadows start equal to the model's current parameters and live on the same device.
    Buffers are not averaged (they are not trained).
    """

    def __init__(self, model: nn.Module, decays: Sequence[float]) -> None:
        decays = tuple(float(d) for d in decays)
        if not decays:
            raise ValueError("EMA needs at least one decay")
        for decay in decays:
            if not 0.0 <= decay < 1.0:
                raise ValueError(f"EMA decay {decay} is outside [0, 1)")
        self.decays = decays
        self.num_updates = 0
        self.shadows: list[dict[str, torch.Tensor]] = [
            {name: p.detach().clone() for name, p in model.named_parameters()} for _ in decays
        ]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every shadow towards ``model``'s current parameters by ``1 - decay``."""
        params = dict(model.named_parameters())
        self._check_names(params)
        for decay, shadow in zip(self.decays, self.shadows):
            for name, target in shadow.items():
                # lerp: target + (1 - d) * (p - target) = d * target + (1 - d) * p
                target.lerp_(params[name].detach().to(target), 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module, index: int = 0) -> None:
        """Overwrite ``model``'s parameters with shadow ``index`` (decay ``decays[index]``)."""
        shadow = self.shadows[index]
        params = dict(model.named_parameters())
        self._check_names(params)
        for name, p in params.items():
            p.copy_(shadow[name])

    @contextmanager
    def swapped_in(self, model: nn.Module, index: int = 0) -> Iterator[nn.Module]:
        """Run the ``with`` body with shadow ``index`` in ``model``; the trained weights come back after."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.copy_to(model, index)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(backup[name])

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadows (e.g. next to the model after it moved)."""
        self.shadows = [{n: t.to(device) for n, t in shadow.items()} for shadow in self.shadows]
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, floats and ints only, so checkpoints load with ``weights_only=True``."""
        return {
            "decays": list(self.decays),
            "num_updates": self.num_updates,
            "shadows": [{n: t.clone() for n, t in shadow.items()} for shadow in self.shadows],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore shadows saved by :meth:`state_dict`; decays and parameter names must match."""
        decays = tuple(float(d) for d in state["decays"])
        if decays != self.decays:
            raise ValueError(f"EMA decays differ: checkpoint {decays}, model {self.decays}")
        for mine, theirs in zip(self.shadows, state["shadows"]):
            missing, unexpected = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
            if missing or unexpected:
                raise ValueError(f"EMA parameters differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
            for name, tensor in mine.items():
                if tensor.shape != theirs[name].shape:
                    raise ValueError(f"EMA parameter {name} has shape {tuple(theirs[name].shape)}, "
                                     f"model has {tuple(tensor.shape)}")
                tensor.copy_(theirs[name])
        self.num_updates = int(state["num_updates"])

    def _check_names(self, params: dict[str, torch.Tensor]) -> None:
        if set(params) != set(self.shadows[0]):
            raise ValueError("model parameters do not match the EMA shadows (a different model?)")
