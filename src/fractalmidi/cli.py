"""The ``fractalmidi`` entry point (``pyproject.toml`` scripts, ``python -m fractalmidi``); the
commands live in :mod:`fractalmidi.commands`."""

from fractalmidi.commands.cli import main

__all__ = ["main"]
