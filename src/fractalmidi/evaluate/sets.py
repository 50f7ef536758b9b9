"""Where the compared pieces come from: MIDI folders, generate outputs, prepared data splits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fractalmidi.errors import UserError
from fractalmidi.evaluate.features import MIDI_SUFFIXES, Notes, notes_from_midi, notes_from_roll
from fractalmidi.outdir import MANIFEST_FILE, SAMPLES_FILE

TEST_SPLIT, TRAIN_SPLIT = "test", "train"


@dataclass
class PieceSource:
    """A named list of pieces that can be read as notes (and as rolls for NLL)."""

    name: str
    path: Path
    kind: str
    """``midi`` (files) or ``prepared`` (indices into a prepared data folder)."""
    items: list = field(default_factory=list)
    data: object = None
    """The :class:`~fractalmidi.data.PreparedData` behind a ``prepared`` source."""

    def __len__(self) -> int:
        return len(self.items)

    def label(self, item) -> str:
        return str(item) if self.kind == "midi" else str(self.data.info(item).get("path", f"piece {item}"))

    def notes(self) -> Iterator[tuple[str, Notes | None, str]]:
        """Yield ``(label, notes, "")`` per piece, or ``(label, None, reason)`` when unreadable."""
        for item in self.items:
            label = self.label(item)
            if self.kind == "midi":
                try:
                    yield label, notes_from_midi(item), ""
                except UserError as err:
                    yield label, None, str(err)
            else:
                yield label, notes_from_roll(self.data.piece(item), _steps_per_quarter(self.data, item)), ""


def _steps_per_quarter(data, index: int) -> float:
    """Roll steps per quarter note of a prepared piece (``fps:N`` grids use the piece's tempo)."""
    from fractalmidi.data.grid import parse_grid

    grid = parse_grid(data.grid)
    if grid.beat_relative:
        return float(grid.steps_per_quarter)
    return grid.fps * 60.0 / float(data.info(index).get("tempo_bpm", 120.0))


def midi_files(folder: Path) -> list[Path]:
    """Every MIDI file under ``folder`` (recursive), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def _smaller(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional limits (None = no limit)."""
    return b if a is None else a if b is None else min(a, b)


def _subsample(items: list, max_pieces: int | None, seed: int) -> list:
    if max_pieces is None or len(items) <= max_pieces:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=max_pieces, replace=False))
    return [items[i] for i in keep]


def generated_source(folder: Path, max_pieces: int | None = None, seed: int = 0) -> PieceSource:
    """The generated set: the samples listed in ``samples.json``, else every MIDI file."""
    if not folder.is_dir():
        raise UserError(f"--generated {folder} is not a folder")
    listing = folder / SAMPLES_FILE
    if listing.is_file():
        try:
            samples = json.loads(listing.read_text())["samples"]
            files = [folder / s["mid"] for s in samples]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{listing} is not a samples.json written by 'fractalmidi generate': {err}") from None
    else:
        files = midi_files(folder)
    if not files:
        raise UserError(f"--generated {folder} holds no MIDI files (.mid/.midi)")
    return PieceSource("generated", folder, "midi", _subsample(files, max_pieces, seed))


def reference_sources(path: Path, max_pieces: int | None = None, seed: int = 0,
                      ceiling_size: int | None = None) -> tuple[PieceSource, PieceSource, PieceSource, str]:
    """``(reference, ceiling_a, ceiling_b, ceiling_kind)`` for ``--reference``.

    A prepared data folder gives its test split as the reference and train-vs-test as the
    ceiling; a MIDI folder is the reference as a whole and a seeded half-vs-half split of it
    is the ceiling. ``ceiling_a`` (the side that plays the generated set) is cut to
    ``ceiling_size`` pieces, the size of the generated set, since OA and Frechet distance
    depend on how many pieces are compared.
    """
    if (path / MANIFEST_FILE).is_file():
        from fractalmidi.data import PreparedData

        data = PreparedData(path)
        test = data.split(TEST_SPLIT)
        train = data.split(TRAIN_SPLIT)
        if not test:
            raise UserError(f"prepared data {path} has an empty '{TEST_SPLIT}' split; re-run 'fractalmidi prepare' "
                            f"with a test split")
        reference = PieceSource(f"reference ({TEST_SPLIT} split)", path, "prepared",
                                _subsample(test, max_pieces, seed), data)
        ceiling_train = PieceSource(f"{TRAIN_SPLIT} split", path, "prepared",
                                    _subsample(train, _smaller(max_pieces, ceiling_size), seed), data)
        return reference, ceiling_train, reference, f"{TRAIN_SPLIT}-vs-{TEST_SPLIT}"
    if not path.is_dir():
        raise UserError(f"--reference {path} is neither a MIDI folder "
                        f"nor a prepared data folder (with {MANIFEST_FILE})")
    files = midi_files(path)
    if len(files) < 2:
        raise UserError(f"--reference {path} holds {len(files)} MIDI file(s); at least 2 are needed")
    files = _subsample(files, max_pieces, seed)
    order = np.random.default_rng(seed).permutation(len(files))
    half = len(files) // 2
    first = PieceSource("reference half A", path, "midi",
                        _subsample([files[i] for i in sorted(order[:half])], ceiling_size, seed))
    second = PieceSource("reference half B", path, "midi", [files[i] for i in sorted(order[half:])])
    return PieceSource("reference", path, "midi", files), first, second, "half-vs-half"
