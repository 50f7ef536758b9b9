"""The one I/O module: atomic writes, the JSON writer, clearing a folder of ours."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fractalmidi.errors import UserError
from fractalmidi.outdir import (
    MARKER,
    atomic_open,
    atomic_path,
    claim_dir,
    clear_folder,
    plain_json,
    sweep_stale_files,
    temp_file_name,
    write_json,
    write_text,
)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "notes.txt"
    write_text(target, "first\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the second")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".notes.txt.") and tmp.suffix == ".txt"
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second" and len(list(target.parent.iterdir())) == 1


def test_durable_binary_write(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "w.bin", "wb", durable=True) as handle:
        handle.write(bytes(range(256)))
    assert (tmp_path / "w.bin").read_bytes() == bytes(range(256))
    with pytest.raises(ValueError, match="has no 'w'"), atomic_open(tmp_path / "w.bin", "ab"):
        pass


def test_json_is_plain_and_strict(tmp_path: Path) -> None:
    value = {"nan": math.nan, "inf": np.float32(np.inf), "n": np.int64(3), "x": np.float64(0.5),
             "a": np.arange(3), "p": tmp_path, "t": (1, [2.0, None]), 4: True}
    plain = {"nan": None, "inf": None, "n": 3, "x": 0.5, "a": [0, 1, 2], "p": str(tmp_path), "t": [1, [2.0, None]],
             "4": True}
    assert plain_json(value) == plain
    write_json(tmp_path / "v.json", value)
    text = (tmp_path / "v.json").read_text()
    assert json.loads(text) == plain and text.endswith("}\n") and "NaN" not in text
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        plain_json({"bad": object()})


def test_temporaries_of_dead_runs_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    torn = [tmp_path / f".last.ckpt.fractalmidi-{pid}-0badc0de.tmp", tmp_path / f".a.mid.fractalmidi-{pid}-00.tmp.mid"]
    live = tmp_path / temp_file_name("b.mid")  # this process is alive: its file stays
    for path in [*torn, live, tmp_path / "user.tmp"]:
        path.write_bytes(b"x")
    sweep_stale_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "user.tmp"])


def test_clear_folder_removes_only_what_it_is_told_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text("a: 1\n")
    (run / "notes.txt").write_text("mine")
    (run / "gifs").symlink_to(outside)
    clear_folder(run, ("checkpoints", "config.yaml", "gifs", "tensorboard"))
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert (outside / "keep").is_dir()
    clear_folder(run)
    assert run.is_dir() and not any(run.iterdir())


def test_claim_dir_replaces_its_own_command_and_refuses_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    claim_dir(out, False, command="demo", entries=["a"])
    (out / "a").write_text("first run")
    claim_dir(out, False, command="demo", entries=["a"])  # a previous demo: replaced without --overwrite
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    (out / "a").write_text("x")
    with pytest.raises(UserError, match="already exists and is not empty; pass --overwrite"):
        claim_dir(out, False, command="report", entries=["b"])
    claim_dir(out, True, command="report", entries=["b"])  # ours, and nothing foreign in it
    (out / "mine.txt").write_text("the user's")
    with pytest.raises(UserError, match="holds files fractalmidi did not write"):
        claim_dir(out, True, command="report", entries=["b"])
    with pytest.raises(UserError, match="the input"):
        claim_dir(out / "sub", True, command="report", entries=["b"], inputs=[out])
    assert (out / "mine.txt").read_text() == "the user's"
