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
