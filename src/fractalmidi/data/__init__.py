"""MIDI <-> piano-roll, prepared datasets and training data.

Names are imported lazily (PEP 562) so that worker processes and light commands that only
need MIDI parsing never import torch or music21.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "midi_to_roll": "fractalmidi.data.roll",
    "roll_to_midi": "fractalmidi.data.roll",
    "roll_to_notes": "fractalmidi.data.roll",
    "midi_notes": "fractalmidi.data.roll",
    "BadMidiError": "fractalmidi.data.roll",
    "PieceTooLongError": "fractalmidi.data.roll",
    "DEFAULT_MAX_STEPS": "fractalmidi.data.roll",
    "Grid": "fractalmidi.data.grid",
    "parse_grid": "fractalmidi.data.grid",
    "onset_f1": "fractalmidi.data.fidelity",
    "round_trip_f1": "fractalmidi.data.fidelity",
    "PreparedData": "fractalmidi.data.cache",
    "PianoRollDataset": "fractalmidi.data.dataset",
    "load_bach_chorales": "fractalmidi.data.sources",
    "load_jsb_chorales": "fractalmidi.data.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fractalmidi.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
