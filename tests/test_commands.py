"""The command layer: only :mod:`fractalmidi.commands` parses argv; every command is registered there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import fractalmidi
from fractalmidi.commands.cli import COMMANDS

SRC = Path(fractalmidi.__file__).resolve().parent
COMMANDS_DIR = SRC / "commands"
NOT_YET_MOVED = {"generate": "generate.py", "info": "models/info.py"}
"""Commands whose flags still live in the library (moved after the family-options change lands)."""


def _imports_argparse(path: Path) -> bool:
    """Whether ``path`` imports argparse anywhere (top level or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "argparse" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
            return True
    return False


def test_argparse_is_imported_only_by_the_command_layer() -> None:
    outside = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if COMMANDS_DIR not in p.parents and _imports_argparse(p))
    assert outside == sorted(NOT_YET_MOVED.values())
    assert _imports_argparse(COMMANDS_DIR / "cli.py")  # the scan does see an import where there is one


def test_every_command_is_a_module_of_the_command_layer() -> None:
    for name, (module_name, summary) in COMMANDS.items():
        if name in NOT_YET_MOVED:
            continue
        assert module_name == f"fractalmidi.commands.{name}", name
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run) and summary, name
