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
    """A real chorale crop ``(1, 1, 128, T)`` in [0, 1] from the JSB training split (first piece).

    Call as ``chorale_crop(T)``; held notes are joined (JSB cannot tell held from repeated).
    """
    import json

    import numpy as np
    import torch

    piece = json.loads((jsb_dir / "Jsb16thSeparated.json").read_text())["train"][0]

    def crop(length: int) -> torch.Tensor:
        roll = np.zeros((128, length), dtype=np.float32)
        for t, voices in enumerate(piece[:length]):
            for pitch in voices:
                if pitch >= 0:
                    roll[int(pitch), t] = CHORALE_VELOCITY / 127.0
        return torch.from_numpy(roll)[None, None]

    return crop
