"""Training data: random piano-roll crops with pitch-shift augmentation, and a Lightning data module.

Every item is a pure function of ``(seed, epoch, index)``, so a resumed training run sees the
same crops and shifts. The sampler hands the epoch to the dataset inside each index
(``(epoch, i)`` tuples), which also reaches persistent and distributed DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fractalmidi.data.cache import PreparedData
from fractalmidi.data.key import normalising_shift, transpose
from fractalmidi.data.roll import NUM_PITCHES, codes_to_planes
from fractalmidi.errors import UserError

DEFAULT_CROP_LENGTH = 256
DEFAULT_PITCH_SHIFT = (-3, 3)
VALID_SEED_OFFSET = 1_000_003
"""Validation crops use a different (fixed) stream than any training epoch."""


class PianoRollDataset(Dataset):
    """Crops as float32 planes ``(2, 128, crop_length)`` (velocity / 127, onset) from one split of a
    prepared folder.

    ``train=True``: a random crop start and a pitch shift drawn from ``pitch_shift`` but clipped
    to the crop's own pitch range (no note ever leaves 0..127); ``augment_factor`` repeats every
    piece that many times per epoch. ``train=False``: one fixed crop per piece, no shift.
    ``key_normalize``: every piece first moves to C major / A minor (:mod:`fractalmidi.data.key`),
    in both modes; ``key_shifts`` holds each piece's normalising shift.
    Pieces shorter than ``crop_length`` are padded with silence at the end.
    """

    def __init__(
        self,
        root: str | os.PathLike | PreparedData,
        split: str = "train",
        crop_length: int = DEFAULT_CROP_LENGTH,
        pitch_shift: tuple[int, int] = DEFAULT_PITCH_SHIFT,
        augment_factor: int = 1,
        train: bool = True,
        seed: int = 0,
        key_normalize: bool = False,
    ) -> None:
        self.data = root if isinstance(root, PreparedData) else PreparedData(root)
        if crop_length < 1:
            raise UserError(f"crop_length must be a positive number of steps, got {crop_length}")
        if augment_factor < 1:
            raise UserError(f"augment_factor must be >= 1, got {augment_factor}")
        low, high = (int(v) for v in pitch_shift)
        if low > high:
            raise UserError(f"pitch_shift must be (min, max) with min <= max, got {tuple(pitch_shift)}")
        self.pieces = self.data.split(split)
        self.split = split
        self.crop_length = int(crop_length)
        self.pitch_shift = (low, high)
        self.augment_factor = int(augment_factor) if train else 1
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.key_shifts = {p: normalising_shift(self.data.piece(p)) for p in self.pieces} if key_normalize else {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pieces) * self.augment_factor

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        piece = self.pieces[index % len(self.pieces)]
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
        else:
            rng = np.random.default_rng([self.seed + VALID_SEED_OFFSET, index])
        steps = self.data.steps(piece)
        start = int(rng.integers(0, max(steps - self.crop_length, 0) + 1))
        crop = self.data.crop(piece, start, self.crop_length)
        if self.key_shifts:
            crop = transpose(crop, self.key_shifts[piece])
        if self.train:
            crop = self._shift(crop, rng)
        return torch.from_numpy(codes_to_planes(crop))

    def _shift(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            return crop
        low = max(self.pitch_shift[0], -int(rows[0]))
        high = min(self.pitch_shift[1], NUM_PITCHES - 1 - int(rows[-1]))
        if low > high:  # the crop's range is wider than the allowed shifts leave room for
            return crop
        shift = int(rng.integers(low, high + 1))
        return np.roll(crop, shift, axis=0) if shift else crop


class EpochSampler(Sampler):
    """Shuffled (or sequential) indices tagged with the epoch: yields ``(epoch, i)``."""

    def __init__(self, dataset: PianoRollDataset, shuffle: bool, seed: int = 0) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (any sampler with ``set_epoch``)."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        return iter([(self.epoch, int(i)) for i in order])


class PianoRollDataModule(L.LightningDataModule):
    """Train / valid / test loaders over a prepared folder (see :class:`PianoRollDataset`)."""

    def __init__(
        self,
        root: str | os.PathLike,
        crop_length: int = DEFAULT_CROP_LENGTH,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pitch_shift: tuple[int, int] = DEFAULT_PITCH_SHIFT,
        augment_factor: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = root
        self.crop_length = crop_length
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pitch_shift = tuple(pitch_shift)
        self.augment_factor = augment_factor
        self.seed = seed
        self.data: PreparedData | None = None
        self.datasets: dict[str, PianoRollDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = PreparedData(self.root)
            for split in ("train", "valid", "test"):
                self.datasets[split] = PianoRollDataset(
                    self.data, split, self.crop_length, self.pitch_shift, self.augment_factor,
                    train=split == "train", seed=self.seed,
                )
            if len(self.datasets["train"]) == 0:
                raise UserError(f"{self.root} has no training pieces")

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = self.datasets[split]
        return DataLoader(
            dataset, batch_size=batch_size, sampler=EpochSampler(dataset, shuffle, self.seed),
            num_workers=self.num_workers, drop_last=False, persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)
