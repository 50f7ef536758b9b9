"""A registry of named model presets: ``build("fractal-tiny", depth=2)``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from fractalmidi.models.base import Generator

FAMILY_MODULES = ("fractalmidi.models.fractal", "fractalmidi.models.jit")
"""Packages that register their presets on import."""

_PRESETS: dict[str, tuple[Callable[..., Generator], dict[str, Any]]] = {}


def register_preset(name: str, factory: Callable[..., Generator], **defaults: Any) -> None:
    """Name a configuration: ``factory(**{**defaults, **overrides})`` builds it."""
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} registered twice")
    _PRESETS[name] = (factory, dict(defaults))


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def available() -> list[str]:
    """All preset names, sorted."""
    _load_families()
    return sorted(_PRESETS)


def preset_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments a preset passes to its factory."""
    _load_families()
    return dict(_lookup(name)[1])


def preset_factory(name: str) -> Callable[..., Generator]:
    """The callable a preset builds with (its signature lists every accepted keyword)."""
    _load_families()
    return _lookup(name)[0]


def _lookup(name: str) -> tuple[Callable[..., Generator], dict[str, Any]]:
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown model preset {name!r}{hint}; available: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


def build(name: str, **overrides: Any) -> Generator:
    """Build preset ``name`` with keyword ``overrides`` on top of its defaults."""
    _load_families()
    factory, defaults = _lookup(name)
    model = factory(**{**defaults, **overrides})
    model.preset = name
    model.overrides = dict(overrides)
    return model
