"""The prepared-data cache: one memory-mappable file of rolls plus an index, and its reader.

Files in a prepared folder:

- ``rolls.u8``: every piece's frames concatenated *time-major*, ``(T_i, 128)`` uint8 note codes
  (velocity + onset bit, see :mod:`fractalmidi.data.roll`) each, so a
  training crop is one contiguous read;
- ``index.npy``: int64 ``(N, 6)`` rows ``start_step, steps, split, pitch_lo, pitch_hi,
  info_offset`` (split 0/1/2 = train/valid/test; info_offset = byte offset in pieces.jsonl);
- ``pieces.jsonl``: one JSON line of metadata per piece (source path, tempo, grid offset...);
- ``manifest.json``: counts, splits, grid, total_steps, settings and every skipped file.

While ``prepare`` runs, ``journal.jsonl`` records each processed job after its frames are
written, so a killed run resumes from the last flushed record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from fractalmidi.data.roll import NUM_PITCHES, canonical_codes
from fractalmidi.errors import UserError
from fractalmidi.outdir import MANIFEST_FILE, atomic_open, write_json

ROLLS_FILE = "rolls.u8"
INDEX_FILE = "index.npy"
PIECES_FILE = "pieces.jsonl"
JOURNAL_FILE = "journal.jsonl"

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
COL_START, COL_STEPS, COL_SPLIT, COL_PITCH_LO, COL_PITCH_HI, COL_INFO = range(6)
INDEX_COLUMNS = ("start_step", "steps", "split", "pitch_lo", "pitch_hi", "info_offset")

FORMAT_NAME = "fractalmidi-prepared"
FORMAT_CHANGES = {2: "note onsets", 3: "beats moved onto the grid"}
"""What each format version added: 2, cells are note codes (velocity + onset bit; 1 held velocities only);
3, a file's beats are moved onto the grid's (:func:`fractalmidi.data.roll.beat_shift`)."""
FORMAT_VERSION = max(FORMAT_CHANGES)

FLUSH_SECONDS = 2.0
"""How often the journal (and the frames it points at) reach the disk while preparing."""


class CacheWriter:
    """Appends rolls to ``rolls.u8`` and records each job in the journal (resumable)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        journal = folder / JOURNAL_FILE
        rolls = folder / ROLLS_FILE
        self.done_keys: set[str] = set()
        self.pieces = 0
        self.failed = 0
        self.end_step = 0
        if journal.is_file():
            self._recover(journal, rolls.stat().st_size // NUM_PITCHES if rolls.is_file() else 0)
        self._rolls = open(rolls, "r+b" if rolls.is_file() else "wb")
        self._rolls.truncate(self.end_step * NUM_PITCHES)
        self._rolls.seek(self.end_step * NUM_PITCHES)
        self._journal = open(journal, "a")
        self._last_flush = time.monotonic()

    def _recover(self, journal: Path, steps_on_disk: int) -> None:
        """Keep the journal's valid prefix: whole lines whose frames reached the disk."""
        with open(journal) as src, atomic_open(journal) as dst:
            for line in src:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a killed run
                if record.get("ok") and record["start"] + record["steps"] > steps_on_disk:
                    break  # frames never reached the disk
                dst.write(json.dumps(record) + "\n")
                self._count(record)

    def _count(self, record: dict) -> None:
        self.done_keys.add(record["key"])
        if record.get("ok"):
            self.pieces += 1
            self.end_step = record["start"] + record["steps"]
        else:
            self.failed += 1

    def records(self):
        """Stream the journal's records (after :meth:`close`)."""
        with open(self.folder / JOURNAL_FILE) as handle:
            for line in handle:
                yield json.loads(line)

    def add(self, key: str, roll: np.ndarray | None, meta: dict | str, split: str | None = None) -> None:
        """Record a piece (``roll`` (1,128,T) uint8 and its meta) or a skip (``roll`` None, reason)."""
        if roll is None:
            record = {"key": key, "ok": False, "reason": str(meta)}
        else:
            frames = np.ascontiguousarray(roll.reshape(NUM_PITCHES, -1).T)
            rows = np.flatnonzero(frames.any(axis=0))
            self._rolls.write(frames.tobytes())
            record = {
                "key": key, "ok": True, "start": self.end_step, "steps": int(frames.shape[0]),
                "pitch_lo": int(rows.min()) if rows.size else 0, "pitch_hi": int(rows.max()) if rows.size else 0,
                "split": split, "meta": meta,
            }
        self._count(record)
        self._journal.write(json.dumps(record) + "\n")
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Frames first, then the journal that points at them."""
        self._rolls.flush()
        os.fsync(self._rolls.fileno())
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._rolls.closed:
            return
        self.flush()
        self._rolls.close()
        self._journal.close()

    def finalize(self, splits: np.ndarray, manifest: dict) -> None:
        """Write index, per-piece metadata and manifest (the journal is then removed)."""
        index = np.zeros((self.pieces, len(INDEX_COLUMNS)), dtype=np.int64)
        offset = 0
        ok = (r for r in self.records() if r.get("ok"))
        with open(self.folder / PIECES_FILE, "wb") as handle:
            for i, record in enumerate(ok):
                line = (json.dumps({**record["meta"], "steps": record["steps"]}) + "\n").encode()
                index[i] = (record["start"], record["steps"], splits[i], record["pitch_lo"], record["pitch_hi"], offset)
                handle.write(line)
                offset += len(line)
        np.save(self.folder / INDEX_FILE, index, allow_pickle=False)
        write_json(self.folder / MANIFEST_FILE, manifest)
        (self.folder / JOURNAL_FILE).unlink(missing_ok=True)


def format_tag() -> str:
    """The ``format`` entry of a manifest written by this version."""
    return f"{FORMAT_NAME}/{FORMAT_VERSION}"


def check_format(manifest: dict, root: Path) -> None:
    """Refuse a prepared folder of another format version with what to do about it."""
    name, _, version = str(manifest.get("format", "")).partition("/")
    if name != FORMAT_NAME or not version.isdigit():
        raise UserError(f"{root} is not a fractalmidi prepared folder (format {manifest.get('format')!r})")
    if int(version) < FORMAT_VERSION:
        missing = ", ".join(change for v, change in FORMAT_CHANGES.items() if v > int(version))
        raise UserError(f"{root} was prepared in an older format (version {version}, without {missing}); "
                        f"re-run 'fractalmidi prepare' to rebuild it")
    if int(version) > FORMAT_VERSION:
        raise UserError(f"{root} was prepared by a newer fractalmidi (format version {version} > {FORMAT_VERSION}); "
                        f"upgrade fractalmidi or re-run 'fractalmidi prepare' with this one")


def read_index(root: Path) -> np.ndarray:
    """``index.npy`` checked against the files it points into: a corrupt or truncated folder is a
    one-line ``UserError`` here, not an IndexError deep in training."""
    def corrupt(why: str) -> UserError:
        return UserError(f"{root} is a damaged prepared folder ({why}); re-run 'fractalmidi prepare'")

    try:
        index = np.load(root / INDEX_FILE, allow_pickle=False)
        rolls_bytes = (root / ROLLS_FILE).stat().st_size
        info_bytes = (root / PIECES_FILE).stat().st_size
    except (OSError, ValueError) as err:
        raise corrupt(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}") from None
    if index.ndim != 2 or index.shape[1] != len(INDEX_COLUMNS) or index.dtype.kind not in "iu":
        raise corrupt(f"{INDEX_FILE} has shape {index.shape} and type {index.dtype}, not (N, {len(INDEX_COLUMNS)}) "
                      f"integers")
    if rolls_bytes % NUM_PITCHES:
        raise corrupt(f"{ROLLS_FILE} is {rolls_bytes} bytes, not whole frames of {NUM_PITCHES}")
    if len(index):
        start, steps = index[:, COL_START], index[:, COL_STEPS]
        low, high = index[:, COL_PITCH_LO], index[:, COL_PITCH_HI]
        frames = rolls_bytes // NUM_PITCHES
        problems = {  # compared without adding: huge values must not overflow
            "a piece starts before the first frame or has no steps": (start < 0).any() or (steps < 1).any(),
            f"a piece ends past the {frames} frames of {ROLLS_FILE} (truncated?)":
                (steps > frames).any() or (start > frames - steps).any(),
            "a split code is not 0, 1 or 2": (~np.isin(index[:, COL_SPLIT], list(SPLIT_CODES.values()))).any(),
            f"a pitch range is outside 0..{NUM_PITCHES - 1}":
                (low < 0).any() or (high >= NUM_PITCHES).any() or (low > high).any(),
            f"a metadata offset lies outside {PIECES_FILE}":
                (index[:, COL_INFO] < 0).any() or (index[:, COL_INFO] >= info_bytes).any(),
        }
        for why, bad in problems.items():
            if bad:
                raise corrupt(why)
    return index


class PreparedData:
    """Read a prepared folder: ``len()``, ``piece(i)``, ``crop(i, start, length)``, ``split(name)``.

    The rolls file is memory-mapped lazily (and dropped when pickled), so DataLoader workers
    each open their own map.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        manifest = self.root / MANIFEST_FILE
        if not manifest.is_file():
            raise UserError(f"{self.root} is not a prepared data folder (no {MANIFEST_FILE}); "
                            f"run 'fractalmidi prepare'")
        self.manifest: dict = json.loads(manifest.read_text())
        check_format(self.manifest, self.root)
        self.index: np.ndarray = read_index(self.root)
        self._frames: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None}

    @property
    def grid(self) -> str:
        return str(self.manifest["grid"])

    @property
    def frames(self) -> np.ndarray:
        """All frames as a read-only ``(total_steps, 128)`` memory map."""
        if self._frames is None:
            path = self.root / ROLLS_FILE
            if path.stat().st_size == 0:
                self._frames = np.zeros((0, NUM_PITCHES), dtype=np.uint8)
            else:
                self._frames = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, NUM_PITCHES)
        return self._frames

    def steps(self, i: int) -> int:
        return int(self.index[i, COL_STEPS])

    def pitch_range(self, i: int) -> tuple[int, int]:
        return int(self.index[i, COL_PITCH_LO]), int(self.index[i, COL_PITCH_HI])

    def crop(self, i: int, start: int, length: int) -> np.ndarray:
        """``(128, length)`` uint8 codes from step ``start`` of piece ``i``, silence past its end; a note
        already sounding at ``start`` gets its onset there (a crop is a piece of its own)."""
        steps = self.steps(i)
        begin = int(self.index[i, COL_START])
        out = np.zeros((NUM_PITCHES, length), dtype=np.uint8)
        lo, hi = max(start, 0), min(start + length, steps)
        if hi > lo:
            out[:, lo - start : hi - start] = self.frames[begin + lo : begin + hi].T
        return canonical_codes(out)

    def piece(self, i: int) -> np.ndarray:
        """The whole piece ``i`` as ``(1, 128, T)`` uint8 note codes."""
        return self.crop(i, 0, self.steps(i))[None]

    def split(self, name: str) -> list[int]:
        if name not in SPLIT_CODES:
            raise UserError(f"unknown split {name!r}: use one of {', '.join(SPLIT_CODES)}")
        return np.flatnonzero(self.index[:, COL_SPLIT] == SPLIT_CODES[name]).tolist()

    def info(self, i: int) -> dict:
        """Metadata of piece ``i``: ``path``, ``tempo_bpm``, ``grid``, ``steps``, ``split``..."""
        with open(self.root / PIECES_FILE, "rb") as handle:
            handle.seek(int(self.index[i, COL_INFO]))
            meta = json.loads(handle.readline())
        split = {code: name for name, code in SPLIT_CODES.items()}[int(self.index[i, COL_SPLIT])]
        return {**meta, "path": meta.get("source"), "split": split, "index": i}
