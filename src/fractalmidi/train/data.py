"""Training batches with a position that survives a restart.

Lightning does not restore the sampler position in the middle of an epoch, so training reads
one endless, seeded stream of ``(epoch, index)`` keys: epoch ``e`` is a permutation seeded by
``(seed, e)``, dealt round-robin to the ranks, and the dataset
(:class:`fractalmidi.data.PianoRollDataset`, which takes such keys) is deterministic given
``(seed, epoch, index)``. The number of batches consumed is saved in every checkpoint, and a
resumed run starts the stream exactly there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

EPOCH_SEED_STRIDE = 1_000_003
"""Mixes the epoch into the permutation seed (a prime, so (seed, epoch) pairs do not collide)."""


@dataclass
class DataPosition:
    """How far a rank has read its stream: batches consumed (shared by sampler and module)."""

    batches: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])


class ResumableSampler(Sampler):
    """An endless stream of ``(epoch, index)`` keys for one rank, starting at ``position``.

    The stream is a pure function of ``(num_items, seed, rank, world_size)``; ``position``
    (read when iteration starts) says how many batches of ``batch_size`` keys to skip.
    """

    def __init__(self, num_items: int, *, batch_size: int, position: DataPosition, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_items < world_size:
            raise ValueError(f"{num_items} items cannot be shared by {world_size} ranks")
        self.num_items = num_items
        self.batch_size = batch_size
        self.position = position
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.per_epoch = num_items // world_size

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's indices in ``epoch`` (every rank gets the same count)."""
        gen = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
        perm = torch.randperm(self.num_items, generator=gen)
        return perm[self.rank :: self.world_size][: self.per_epoch].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = self.position.batches * self.batch_size
        epoch, offset = divmod(start, self.per_epoch)
        while True:
            for index in self.epoch_order(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0


def _loader_generator(seed: int) -> torch.Generator:
    """DataLoaders draw worker seeds from this, not from the global RNG the model trains with."""
    return torch.Generator().manual_seed(seed)


def train_loader(dataset: Any, *, batch_size: int, num_workers: int, position: DataPosition, seed: int,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """The endless training loader (Lightning counts steps, not epochs)."""
    sampler = ResumableSampler(len(dataset), batch_size=batch_size, position=position, seed=seed,
                               rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=_loader_generator(seed), persistent_workers=num_workers > 0, drop_last=True)


def val_loader(dataset: Any, *, batch_size: int, num_workers: int, seed: int) -> DataLoader:
    """Validation in a fixed order on the dataset's deterministic crops."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=_loader_generator(seed), drop_last=False)


def split_batch(batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch is a roll tensor, ``(rolls, labels, ...)`` or a dict with ``roll`` and optionally ``label`` and
    ``edges``: return the rolls and the keyword conditions of :meth:`Generator.loss` the batch carries."""
    if isinstance(batch, torch.Tensor):
        return batch, {}
    if isinstance(batch, dict):
        conditions = {"labels": batch.get("label"), "edges": batch.get("edges")}
        return batch["roll"], {k: v for k, v in conditions.items() if v is not None}
    rolls = batch[0]
    labelled = len(batch) > 1 and isinstance(batch[1], torch.Tensor) and batch[1].dtype == torch.long
    return rolls, {"labels": batch[1]} if labelled else {}
