"""Project-wide settings that users may point elsewhere through the environment."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "FRACTALMIDI_DATA"
"""Environment variable naming the folder with the shared datasets (pop909/, jsb_chorales/)."""

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """Where the shared datasets live: ``$FRACTALMIDI_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else (_REPO_ROOT.parent / "shared" / "data")
