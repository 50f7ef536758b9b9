"""All-or-nothing output folders: build in a hidden sibling, then swap it in.

A command that fails half-way (bad request found late, Ctrl-C, a crash) leaves nothing
behind, and an existing folder is only replaced with ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fractalmidi.errors import UserError


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty existing ``out`` unless ``overwrite`` (call before any long work)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it or choose another folder")


@contextlib.contextmanager
def staged_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder next to ``out``; on success it becomes ``out``.

    On any exception the staging folder is removed and ``out`` is untouched.
    """
    out = Path(out)
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        check_out_dir(out, overwrite)  # someone may have written there meanwhile
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
