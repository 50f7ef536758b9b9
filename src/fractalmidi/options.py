"""Typed option dataclasses: one field per option, with its type, default and one-line help.

The model families, the training config and ``generate`` declare their options this way, and
everything that lists, checks or parses options reads them from the dataclass: YAML values
and ``key=value`` overrides are coerced to the field's type, values are checked against the
field's :class:`Bound`, and command-line flags are made from the fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from fractalmidi.errors import UserError

HELP = "help"
BOUND = "bound"
"""Field metadata: the :class:`Bound` a value must keep."""
FLAG = "flag"
"""Field metadata: False = not a command-line flag (e.g. a nested mapping)."""
TRAINING_ONLY = "training_only"
"""Field metadata: True = shapes how the weights are trained, not which weights exist (dropout, say), so a
resumed run may change it."""
FLAG_KEYS = ("choices", "metavar", "type")
"""Field metadata passed to ``argparse`` as they are."""


@dataclass(frozen=True)
class Bound:
    """A rule on an option's value, and how an error states it: ``KEY must be TEXT, got VALUE``."""

    text: str
    ok: Callable[[Any], bool]


def _each(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``test`` on a value, or on every item of a list value; a value of the wrong type fails."""
    def ok(value: Any) -> bool:
        items = value if isinstance(value, (list, tuple)) else [value]
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) and test(v) for v in items)
    return ok


POSITIVE_INT = Bound("a positive integer", _each(lambda v: v >= 1))
NON_NEGATIVE = Bound(">= 0", _each(lambda v: v >= 0))
POSITIVE = Bound("> 0", _each(lambda v: v > 0))
UNIT = Bound("in [0, 1]", _each(lambda v: 0 <= v <= 1))


def count_bound(most: int, least: int = 1) -> Bound:
    """Whole numbers in ``least..most`` (iterations, steps): bounded before anything is allocated."""
    return Bound(f"whole numbers in {least}..{most}", _each(lambda v: isinstance(v, int) and least <= v <= most))


def check_values(cls: type, values: Mapping[str, Any], name: Callable[[str], str] = str) -> None:
    """Every number finite and every value within its field's :class:`Bound` (None = unset passes);
    otherwise a one-line ``UserError`` naming the option as ``name(key)``."""
    fields = fields_by_name(cls)
    for key, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise UserError(f"{name(key)} must be a finite number, got {value}")
        bound = fields[key].metadata.get(BOUND) if key in fields else None
        if bound is not None and value is not None and not bound.ok(value):
            raise UserError(f"{name(key)} must be {bound.text}, got {value}")


def option(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 (argparse's word)
    """A dataclass field with a default and its one-line ``help`` (a list or dict default is copied per instance)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={HELP: help, **metadata})
    return dataclasses.field(default=default, metadata={HELP: help, **metadata})


def names(cls: type) -> list[str]:
    """The option names of a dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def fields_by_name(cls: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of ``cls`` by name."""
    return {f.name: f for f in dataclasses.fields(cls)}


def help_of(cls: type, name: str) -> str:
    """The one-line help of option ``name``."""
    return fields_by_name(cls)[name].metadata.get(HELP, "")


def defaults(cls: type) -> dict[str, Any]:
    """Every option of ``cls`` with its default value."""
    return dataclasses.asdict(cls())


def types_of(cls: type) -> dict[str, Any]:
    """Option name -> resolved type annotation."""
    return typing.get_type_hints(cls)


def closest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``key`` (a typo's likely intent), or None."""
    found = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return found[0] if found else None


def coerce_values(cls: type, values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``values`` (options of ``cls``, names already checked) coerced to their field types."""
    hints = types_of(cls)
    return {key: coerce(value, hints[key], f"{where}{key}") for key, value in values.items()}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a field type; numbers given as YAML strings (``1e-4``) are converted,
    lists become tuples for tuple fields."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for choice in options:
            if choice is type(None):
                continue
            try:
                return coerce(value, choice, key)
            except UserError:
                continue
        raise UserError(f"{key}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list of {_type_name(args[0])}, got {value!r}")
        item_types = [args[0]] * len(value) if len(args) == 1 or args[1:] == (Ellipsis,) else list(args)
        if len(item_types) != len(value):
            raise UserError(f"{key}: expected {len(item_types)} values, got {value!r}")
        items = [coerce(v, t, key) for v, t in zip(value, item_types)]
        return items if origin is list else tuple(items)
    if origin is dict:
        key_type, item_type = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise UserError(f"{key}: expected a mapping of {_type_name(key_type)} to {_type_name(item_type)}, "
                            f"got {value!r}")
        return {coerce(k, key_type, key): coerce(v, item_type, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported option type {tp!r}")  # a schema bug, not user input


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively; rejects objects that YAML / ``weights_only`` checkpoints cannot hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f"config value {value!r} is not a plain YAML value (number, string, list, mapping)")


def flag(name: str) -> str:
    """The command-line flag of option ``name``: ``num_iter_list`` -> ``--num-iter-list``."""
    return "--" + name.replace("_", "-")


def flag_arguments(cls: type, name: str) -> dict[str, Any]:
    """``argparse.add_argument`` keywords for option ``name`` of ``cls`` (default None: unset, so a
    config file or the model's default applies)."""
    tp = types_of(cls)[name]
    field = fields_by_name(cls)[name]
    kwargs: dict[str, Any] = {"default": None, "help": field.metadata.get(HELP, "")}
    if typing.get_origin(tp) in (Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (list, tuple):
        fixed = not (len(args) == 1 or args[1:] == (Ellipsis,))
        kwargs["nargs"] = len(args) if fixed else "+"
        tp = args[0]
    if tp is bool:
        kwargs["action"] = "store_true"
    else:
        kwargs["type"] = tp
    kwargs.update({k: field.metadata[k] for k in FLAG_KEYS if k in field.metadata})
    return kwargs
