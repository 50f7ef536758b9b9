"""The command layer: only :mod:`fractalmidi.commands` parses argv; every command is registered there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import fractalmidi
from fractalmidi.commands.cli import COMMANDS

SRC = Path(fractalmidi.__file__).resolve().parent
COMMANDS_DIR = SRC / "commands"
ENTRY_POINTS = {"cli.py", "__main__.py"}
"""The two modules outside the command layer that may start it (``fractalmidi``, ``python -m fractalmidi``)."""


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top level or inside a function (``from a import b``: a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _imports_argparse(path: Path) -> bool:
    return any(name.split(".")[0] == "argparse" for name in _imported(path))


def _library_modules() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if COMMANDS_DIR not in p.parents]


def test_argparse_is_imported_only_by_the_command_layer() -> None:
    outside = sorted(str(p.relative_to(SRC)) for p in _library_modules() if _imports_argparse(p))
    assert outside == []
    assert _imports_argparse(COMMANDS_DIR / "cli.py")  # the scan does see an import where there is one


def test_every_command_is_a_module_of_the_command_layer() -> None:
    for name, (module_name, summary) in COMMANDS.items():
        assert module_name == f"fractalmidi.commands.{name}", name
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run) and summary, name


def test_the_library_never_calls_the_command_layer() -> None:
    """The demo, the studio and every other library module call library functions, never a command's argv."""
    callers = sorted(str(p.relative_to(SRC)) for p in _library_modules()
                     if str(p.relative_to(SRC)) not in ENTRY_POINTS
                     and any(name.startswith(("fractalmidi.commands", "fractalmidi.cli")) for name in _imported(p)))
    assert callers == []
