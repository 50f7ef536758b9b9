"""Shared fixtures: the shared datasets are found through FRACTALMIDI_DATA (default ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fractalmidi.settings import DATA_ENV, shared_data_dir


def _dataset(name: str) -> Path:
    path = shared_data_dir() / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (set {DATA_ENV} to the folder holding it)")
    return path


@pytest.fixture(scope="session")
def pop909_dir() -> Path:
    """The POP909 MIDI folder, or skip with the reason."""
    return _dataset("pop909")


@pytest.fixture(scope="session")
def jsb_dir() -> Path:
    """The JSB chorales folder, or skip with the reason."""
    return _dataset("jsb_chorales")


CHORALE_VELOCITY = 90
"""JSB chorales carry no dynamics: every sounding pitch gets this velocity in test crops."""


@pytest.fixture(scope="session")
def chorale_crop(jsb_dir: Path):
    """A real chorale crop as model planes ``(1, 2, 128, T)`` (velocity / 127, onset) from the JSB
    training split (first piece), silence past its end.

    Call as ``chorale_crop(T)``; held notes are joined (JSB cannot tell held from repeated).
    """
    import numpy as np
    import torch

    from fractalmidi.data import load_jsb_chorales
    from fractalmidi.data.roll import codes_to_planes

    piece = load_jsb_chorales(jsb_dir)["train"][0][0]  # (128, T) uint8 codes, velocity CHORALE_VELOCITY

    def crop(length: int) -> torch.Tensor:
        codes = np.zeros((128, length), dtype=np.uint8)
        steps = min(length, piece.shape[1])
        codes[:, :steps] = piece[:, :steps]
        return torch.from_numpy(codes_to_planes(codes))[None]

    return crop


@pytest.fixture(scope="session")
def make_midi():
    """Factory writing a small MIDI file with symusic (realistic generated fixtures).

    ``make_midi(path, notes, *, tpq=480, tempo=120.0, drum_notes=(), pedals=())`` where notes
    and drum_notes are ``(pitch, start_tick, duration_ticks, velocity)`` and pedals
    ``(start_tick, duration_ticks)`` on the first track. Returns the path.
    """
    import numpy as np
    from symusic import ControlChange, Note, Score, Tempo, Track

    def write(path, notes, *, tpq=480, tempo=120.0, drum_notes=(), pedals=()):
        score = Score(tpq)
        score.tempos.append(Tempo(0, float(tempo)))
        for name, items, is_drum in (("piano", notes, False), ("drums", drum_notes, True)):
            if not len(items) and is_drum:
                continue
            track = Track(name, 0, is_drum)
            if len(items):
                arr = np.asarray(items, dtype=np.int64).reshape(-1, 4)
                track.notes = Note.from_numpy(arr[:, 1].astype(np.int32), arr[:, 2].astype(np.int32),
                                              arr[:, 0].astype(np.int8), arr[:, 3].astype(np.int8))
            if not is_drum:
                for start, duration in pedals:  # sustain pedal = CC64 down (127) then up (0)
                    track.controls.append(ControlChange(int(start), 64, 127))
                    track.controls.append(ControlChange(int(start + duration), 64, 0))
            score.tracks.append(track)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        score.dump_midi(str(path))
        return Path(path)

    return write


@pytest.fixture
def torch_single_thread():
    """Run tiny models on one intra-op thread (faster than contended OpenMP threads); restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prepared_jsb(jsb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All JSB chorales prepared by ``fractalmidi prepare`` (about a second): a real prepared data folder."""
    from fractalmidi.cli import main

    out = tmp_path_factory.mktemp("prepared") / "jsb"
    assert main(["prepare", str(jsb_dir), "--out", str(out), "--workers", "0"]) == 0
    return out


TINY_STEPS = 2
"""Optimiser steps of the session's tiny models: generation tests ask nothing of quality."""


@pytest.fixture(scope="session")
def train_tiny(prepared_jsb: Path, tmp_path_factory: pytest.TempPathFactory):
    """Factory: ``train_tiny(CONFIG) -> last.ckpt`` of ``configs/CONFIG`` trained a couple of steps on short
    crops of the prepared JSB chorales (for tests that ask nothing of quality)."""
    from fractalmidi.train.runner import plan, train

    def run(config: str) -> Path:
        folder = tmp_path_factory.mktemp(Path(config).stem) / "run"
        train(plan(str(Path(__file__).resolve().parents[1] / "configs" / config), [
            f"data.root={prepared_jsb}", f"logging.output_dir={folder}", f"training.max_steps={TINY_STEPS}",
            "data.crop_length=32", "training.batch_size=2", "training.limit_val_batches=0",
            "logging.log_images_every_n_steps=0", "logging.progress_bar=false",
        ]))
        return folder / "checkpoints" / "last.ckpt"

    return run


@pytest.fixture(scope="session")
def tiny_fractal_checkpoint(train_tiny) -> Path:
    """``last.ckpt`` of fractal-tiny trained a couple of steps on the prepared JSB chorales (session-wide)."""
    return train_tiny("fractal_tiny.yaml")


@pytest.fixture(scope="session")
def huge_note_midi():
    """Factory for the 37-byte MIDI whose one note lasts 0x0FFFFFFF ticks at 1 tick per quarter
    (a ~137 GB roll if its length were trusted): ``huge_note_midi(path) -> path``."""
    import struct

    def write(path):
        events = bytes([0, 0x90, 60, 64, 0xFF, 0xFF, 0xFF, 0x7F, 0x80, 60, 0, 0, 0xFF, 0x2F, 0])
        data = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1) + b"MTrk" + struct.pack(">I", len(events)) + events
        assert len(data) == 37
        Path(path).write_bytes(data)
        return Path(path)

    return write


STUDIO_PIECE_TEMPO = 100.0
STUDIO_PIECE_STEPS = 64


@pytest.fixture(scope="session")
def studio_piece(make_midi, tmp_path_factory: pytest.TempPathFactory):
    """Four bars on the 16th grid at 100 BPM, 480 ticks per quarter, as a namespace with ``notes``
    (``(pitch, onset step, end step,
        velocity)``), ``path``, ``tempo_bpm`` and ``steps``. A melody, chords ending on bar lines (a new velocity
    every bar, so each is its own note) and a bass: notes that touch the regions tests paint."""
    notes = []
    melody = [72, 74, 76, 77, 79, 77, 76, 74]
    for i, pitch in enumerate(melody * 2):
        notes.append((pitch, i * 4, i * 4 + 3, 96))
    for bar in range(STUDIO_PIECE_STEPS // 16):
        for pitch in (52, 55, 60):
            notes.append((pitch, bar * 16, bar * 16 + 16, 64 + 8 * (bar % 2)))
        notes.append((40 + bar, bar * 16, bar * 16 + 8, 80))
    ticks = 480 // 4
    events = [(p, on * ticks, (off - on) * ticks, v) for p, on, off, v in notes]
    path = make_midi(tmp_path_factory.mktemp("studio_piece") / "piece.mid", events, tpq=480, tempo=STUDIO_PIECE_TEMPO)
    from types import SimpleNamespace

    return SimpleNamespace(notes=notes, path=path, tempo_bpm=STUDIO_PIECE_TEMPO, steps=STUDIO_PIECE_STEPS)
