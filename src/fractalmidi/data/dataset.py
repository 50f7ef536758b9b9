"""Training data: random piano-roll crops with pitch-shift augmentation.

Every item is a pure function of ``(seed, epoch, index)``, so a resumed training run sees the
same crops and shifts. The training sampler (:mod:`fractalmidi.train.data`) hands the epoch to
the dataset inside each index (``(epoch, i)`` tuples), which also reaches persistent and
distributed DataLoader workers.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from fractalmidi.data.cache import PreparedData
from fractalmidi.data.grid import STEPS_PER_BAR
from fractalmidi.data.key import mean_pitch, normalising_shift, transpose
from fractalmidi.data.loudness import LOUDNESS_CENTER, move_loudness, piece_loudness
from fractalmidi.data.roll import NUM_PITCHES, codes_to_planes
from fractalmidi.data.style import piece_style, style_label
from fractalmidi.errors import UserError

DEFAULT_CROP_LENGTH = 256
DEFAULT_PITCH_SHIFT = (-3, 3)
VALID_SEED_OFFSET = 1_000_003
"""Validation crops use a different (fixed) stream than any training epoch."""


class PianoRollDataset(Dataset):
    """Crops as float32 planes ``(2, 128, crop_length)`` (velocity / 127, onset) from one split of a
    prepared folder.

    ``train=True``: a random crop start (a multiple of ``align`` steps, so a crop starts on a beat and the
    model learns where beats fall) and a pitch shift drawn from ``pitch_shift`` but clipped
    to the crop's own pitch range (no note ever leaves 0..127); ``augment_factor`` repeats every
    piece that many times per epoch. ``train=False``: one fixed crop per piece, no shift.
    ``key_normalize``: every piece first moves to C major / A minor (:mod:`fractalmidi.data.key`),
    in both modes; ``key_shifts`` holds each piece's normalising shift and ``pitch_means`` its mean pitch.
    ``loudness_normalize``: every piece's velocities first move so its loudness is the centre's
    (:mod:`fractalmidi.data.loudness`); ``loudness`` holds each piece's own loudness.
    Pieces shorter than ``crop_length`` are padded with silence at the end.
    ``edge_crops`` > 0: a training crop starts at its piece's first step with half this probability and
    ends in its piece's last bar with the other half (else anywhere), and every item is a dict of the
    ``roll`` and its ``edges`` (starts at the piece's start?, holds its end?), so a model learns how
    pieces begin and end.
    ``style_edges`` (:func:`~fractalmidi.data.style.style_edges`): every item is a dict with the ``label`` of
    its crop's style (:mod:`fractalmidi.data.style`).
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
        align: int = 1,
        loudness_normalize: bool = False,
        edge_crops: float = 0.0,
        bar: int = STEPS_PER_BAR,
        style_edges: list[list[float]] | None = None,
    ) -> None:
        self.data = root if isinstance(root, PreparedData) else PreparedData(root)
        if crop_length < 1:
            raise UserError(f"crop_length must be a positive number of steps, got {crop_length}")
        if align < 1:
            raise UserError(f"crop alignment must be a positive number of steps, got {align}")
        if augment_factor < 1:
            raise UserError(f"augment_factor must be >= 1, got {augment_factor}")
        if not 0 <= edge_crops <= 1:
            raise UserError(f"the share of edge crops must be in [0, 1], got {edge_crops}")
        low, high = (int(v) for v in pitch_shift)
        if low > high:
            raise UserError(f"pitch_shift must be (min, max) with min <= max, got {tuple(pitch_shift)}")
        self.pieces = self.data.split(split)
        self.split = split
        self.crop_length = int(crop_length)
        self.align = int(align)
        self.pitch_shift = (low, high)
        self.augment_factor = int(augment_factor) if train else 1
        self.train = train
        self.edge_crops = float(edge_crops)
        self.bar = int(bar)
        self.seed = int(seed)
        self.epoch = 0
        self.key_shifts: dict[int, int] = {}
        self.pitch_means: dict[int, float | None] = {}
        self.loudness: dict[int, int | None] = {}
        self.style_edges = style_edges
        for p in self.pieces if key_normalize or loudness_normalize else ():  # each piece read once
            codes = self.data.piece(p)
            if key_normalize:
                self.key_shifts[p] = normalising_shift(codes)
                self.pitch_means[p] = mean_pitch(codes)
            if loudness_normalize:
                self.loudness[p] = piece_loudness(codes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pieces) * self.augment_factor

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor | dict[str, torch.Tensor]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        piece = self.pieces[index % len(self.pieces)]
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
        else:
            rng = np.random.default_rng([self.seed + VALID_SEED_OFFSET, index])
        steps = self.data.steps(piece)
        start = self._crop_start(steps, rng)
        crop = self.data.crop(piece, start, self.crop_length)
        if self.key_shifts:
            crop = transpose(crop, self.key_shifts[piece])
        if self.loudness.get(piece) is not None:
            crop = move_loudness(crop, LOUDNESS_CENTER - self.loudness[piece])
        if self.train:
            crop = self._shift(crop, rng)
        roll = torch.from_numpy(codes_to_planes(crop))
        if not self.edge_crops and not self.style_edges:
            return roll
        item = {"roll": roll}
        if self.edge_crops:
            item["edges"] = torch.tensor([start == 0, start + self.crop_length >= steps])
        if self.style_edges:
            item["label"] = torch.tensor(style_label(piece_style(crop), self.style_edges), dtype=torch.long)
        return item

    def _crop_start(self, steps: int, rng: np.random.Generator) -> int:
        """A random crop start (on the ``align`` grid); with ``edge_crops``, at the piece's start or so that
        the crop ends with the piece's last bar as often as asked (training crops only)."""
        draw = rng.random() if self.train and self.edge_crops else 1.0
        if draw < self.edge_crops / 2:
            return 0
        if draw < self.edge_crops:
            end = -(-steps // self.bar) * self.bar  # the piece's last bar, completed with silence
            return max(end - self.crop_length, 0)
        return self.align * int(rng.integers(0, max(steps - self.crop_length, 0) // self.align + 1))

    def _shift(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            return crop
        low = max(self.pitch_shift[0], -int(rows[0]))
        high = min(self.pitch_shift[1], NUM_PITCHES - 1 - int(rows[-1]))
        if low > high:  # the crop's range is wider than the allowed shifts leave room for
            return crop
        shift = int(rng.integers(low, high + 1))
        return transpose(crop, shift)
