"""Model families and their named presets: ``build("fractal-tiny", depths=(2, 1, 1))``.

A family is a :class:`Generator` subclass with two option dataclasses (model and sampling);
a preset is a family plus the option values where it differs from the dataclass defaults.
Options are one flat namespace per family (model and sampling names never collide), which
is how training configs and checkpoints store them (``model.*``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fractalmidi.models.base import Generator
from fractalmidi.options import closest, defaults, names


@dataclass(frozen=True)
class Family:
    """A generator class with its model and sampling option dataclasses."""

    model: type[Generator]
    options: type
    sampling: type
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Option names that older checkpoints store -> today's name."""

    @property
    def name(self) -> str:
        return self.model.family

    def option_names(self) -> list[str]:
        """Model options, then sampling options."""
        return names(self.options) + names(self.sampling)

    def defaults(self) -> dict[str, Any]:
        return {**defaults(self.options), **defaults(self.sampling)}


@dataclass(frozen=True)
class Preset:
    """A named configuration of a family."""

    name: str
    family: Family
    values: dict[str, Any]
    """Where this preset differs from the family's defaults."""
    help: str


_FAMILIES: dict[str, Family] = {}
_PRESETS: dict[str, Preset] = {}


def register_family(family: Family) -> Family:
    """Add a family (its option names must be unique across model and sampling options)."""
    clash = set(names(family.options)) & set(names(family.sampling))
    if clash:
        raise ValueError(f"family {family.name!r}: {sorted(clash)} are both model and sampling options")
    _FAMILIES[family.name] = family
    return family


def register_preset(name: str, family: Family, help: str, **values: Any) -> None:  # noqa: A002
    """Name a configuration of ``family``: the option ``values`` where it differs from the defaults."""
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} registered twice")
    unknown = sorted(set(values) - set(family.option_names()))
    if unknown:
        raise ValueError(f"preset {name!r}: {unknown} are not {family.name} options")
    _PRESETS[name] = Preset(name, family, dict(values), help)


def _load_families() -> None:
    """Import every package under :mod:`fractalmidi.models`: each registers its family and presets,
    so a new family is one new package."""
    package = importlib.import_module("fractalmidi.models")
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            importlib.import_module(f"{package.__name__}.{module.name}")


def families() -> dict[str, Family]:
    """Every family by name."""
    _load_families()
    return dict(_FAMILIES)


def available() -> list[str]:
    """All preset names, sorted."""
    _load_families()
    return sorted(_PRESETS)


def preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a ``KeyError`` naming the closest one."""
    _load_families()
    if name not in _PRESETS:
        near = closest(name, _PRESETS)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise KeyError(f"unknown model preset {name!r}{hint}; available: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


def preset_defaults(name: str) -> dict[str, Any]:
    """Every option of preset ``name`` (model and sampling) with its value there."""
    spec = preset(name)
    return {**spec.family.defaults(), **spec.values}


def upgrade_stored(model_config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A stored ``model`` section with options renamed since it was written under today's names."""
    renamed = preset(name).family.renamed
    return {renamed.get(key, key): value for key, value in model_config.items()}


def build(name: str, **overrides: Any) -> Generator:
    """Build preset ``name`` with option ``overrides`` on top of its values.

    An unknown option is a ``TypeError`` naming the closest one.
    """
    spec = preset(name)
    family = spec.family
    values = {**spec.values, **overrides}
    accepted = family.option_names()
    for key in values:
        if key not in accepted:
            near = closest(key, accepted)
            hint = f"; did you mean {near!r}?" if near else ""
            raise TypeError(f"{key!r} is not a {family.name} option{hint}")
    model_names, sampling_names = set(names(family.options)), set(names(family.sampling))
    options = family.options(**{k: _frozen(v) for k, v in values.items() if k in model_names})
    sampling = family.sampling(**{k: _frozen(v) for k, v in values.items() if k in sampling_names})
    model = family.model(options, sampling)
    model.preset = name
    return model


def _frozen(value: Any) -> Any:
    """Lists (as YAML and checkpoints store them) -> tuples, as the option dataclasses hold them."""
    return tuple(value) if isinstance(value, list) else value

