"""Issue 12: never lose a user's data, never show a traceback.

Every bad case ends with one line on stderr, exit code 2, and the user's files byte for byte as
they were (a snapshot of the tree is compared). Inputs are tiny generated MIDI files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fractalmidi.cli import main
from fractalmidi.errors import UserError
from fractalmidi.outdir import MARKER, check_out_dir, staged_dir, sweep_stale, write_marker
from hooked_prepare import command as hooked_prepare

SIXTEENTH = 120
TUNE = [(60, 0, 2 * SIXTEENTH, 80), (64, 2 * SIXTEENTH, 2 * SIXTEENTH, 90), (67, 4 * SIXTEENTH, 4 * SIXTEENTH, 70)]


def tune(shift: int = 0) -> list[tuple[int, int, int, int]]:
    return [(p + shift, s, d, v) for p, s, d, v in TUNE]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys, command: str) -> str:
    """The single error line (progress bars excluded) of a failed command."""
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.strip() and not re.search(r"\[\d+:\d+", line)]  # progress bars show [elapsed...]
    assert len(err) == 1 and err[0].startswith(f"fractalmidi {command}: error: "), err
    return err[0]


@pytest.fixture
def home(tmp_path: Path, make_midi) -> Path:
    """A user's folder: MIDI in ``songs/`` (one nested), notes, a thesis, a private key."""
    root = tmp_path / "home"
    for i in range(4):
        make_midi(root / "songs" / ("sub" if i == 3 else "") / f"song{i}.mid", tune(i))
    (root / "notes.txt").write_text("my notes")
    (root / "sub").mkdir()
    (root / "sub" / "thesis.tex").write_text("\\documentclass{article}")
    (root / ".id_rsa").write_text("PRIVATE")
    return root


# ---------------------------------------------------------------- 1-4: data loss


@pytest.mark.parametrize("where, why", [("songs", "is the input"), (".", "contains the input"),
                                        ("songs/sub", "lies inside the input")])
def test_prepare_never_writes_into_its_input(home: Path, where: str, why: str, capsys) -> None:
    before = snapshot(home)
    assert main(["prepare", str(home / "songs"), "--out", str(home / where), "--overwrite", "--workers", "0"]) == 2
    assert why in one_line_error(capsys, "prepare")
    assert snapshot(home) == before


def test_overwrite_never_replaces_a_folder_fractalmidi_did_not_make(home: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(home.parent / "elsewhere"))
    other = home.parent / "elsewhere"
    other.mkdir()
    (other / ".id_rsa").write_text("PRIVATE")
    before = snapshot(home.parent)
    assert main(["prepare", str(home / "songs"), "--out", "~", "--overwrite", "--workers", "0"]) == 2
    assert "not made by fractalmidi" in one_line_error(capsys, "prepare")
    assert snapshot(home.parent) == before
    # a folder it made, with a file the user added afterwards, is not replaced either
    out = home.parent / "data"
    assert main(["prepare", str(home / "songs"), "--out", str(out), "--workers", "0"]) == 0
    (out / "mine.txt").write_text("mine")
    assert main(["prepare", str(home / "songs"), "--out", str(out), "--overwrite", "--workers", "0"]) == 2
    assert "did not write (mine.txt)" in one_line_error(capsys, "prepare")
    assert (out / "mine.txt").read_text() == "mine" and (out / "manifest.json").is_file()


def test_generate_and_evaluate_never_write_into_their_inputs(home: Path, tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"checked before it is loaded")
    before = snapshot(home)
    songs = home / "songs"
    argv = ["generate", "--checkpoint", str(checkpoint), "--mode", "continue", "--input", str(songs / "song0.mid"),
            "--condition-length", "4", "--length", "16", "--out", str(songs), "--overwrite"]
    assert main(argv) == 2 and "contains the input" in one_line_error(capsys, "generate")
    argv = ["evaluate", "--generated", str(songs), "--reference", str(songs), "--out", str(songs), "--overwrite"]
    assert main(argv) == 2 and "is the input" in one_line_error(capsys, "evaluate")
    argv = ["generate", "--checkpoint", str(checkpoint), "--length", "16", "--out", str(tmp_path), "--overwrite"]
    assert main(argv) == 2 and "contains the input" in one_line_error(capsys, "generate")
    assert snapshot(home) == before and checkpoint.read_bytes() == b"checked before it is loaded"


def test_overwrite_never_touches_siblings(home: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    old, partial = tmp_path / "data.old", tmp_path / "data.partial"
    for folder in (old, partial):
        folder.mkdir()
        (folder / "keep.txt").write_text(folder.name)
    argv = ["prepare", str(home / "songs"), "--out", str(data), "--overwrite", "--workers", "0"]
    assert main(argv) == 2  # data.partial is the user's, not a run of ours: refused, named
    assert "data.partial exists and was not made by fractalmidi" in one_line_error(capsys, "prepare")
    partial.rename(tmp_path / "user.partial")
    assert main(argv) == 0 and main(argv) == 0  # made, then replaced
    capsys.readouterr()
    assert (old / "keep.txt").read_text() == "data.old" and (tmp_path / "user.partial" / "keep.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.old", "home", "user.partial"]


def test_resume_never_replaces_a_finished_folder(home: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    argv = ["prepare", str(home / "songs"), "--out", str(data), "--workers", "0"]
    assert main(argv) == 0
    stale = tmp_path / "data.partial"  # an older unfinished run of ours
    stale.mkdir()
    write_marker(stale, "prepare")
    (data / "mine.txt").write_text("mine")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "never replaces a finished folder" in one_line_error(capsys, "prepare")
    assert snapshot(tmp_path) == before


def test_convert_and_render_never_overwrite_their_input(home: Path, capsys) -> None:
    song = home / "songs" / "song0.mid"
    before = snapshot(home)
    assert main(["convert", str(song), str(song), "--overwrite"]) == 2
    assert "is the input" in one_line_error(capsys, "convert")
    assert main(["convert", str(song), str(home / "songs" / ".." / "songs" / "song0.mid"), "--overwrite"]) == 2
    capsys.readouterr()
    assert main(["render", str(song), "--png", str(song), "--overwrite"]) == 2
    assert "is the input" in one_line_error(capsys, "render")
    assert snapshot(home) == before


def test_staging_is_unique_cleaned_on_failure_and_swept_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_dir(out, False, command="test") as stage:
        (stage / "half.txt").write_text("half")
        raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []
    # what a SIGKILLed run leaves: a staging folder of a dead process, with our marker
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".out.fractalmidi-{int(dead.stdout)}-0badc0de.partial"
    leftover.mkdir()
    write_marker(leftover, "test")
    running = tmp_path / f".out.fractalmidi-{os.getpid()}-0badc0de.partial"  # a live run's: kept
    running.mkdir()
    write_marker(running, "test")
    foreign = tmp_path / ".out.fractalmidi-1-abc.partial.txt"
    foreign.write_text("not ours")
    with staged_dir(out, False, command="test") as stage:  # the next run on the same output sweeps
        (stage / "a.txt").write_text("a")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name, running.name, "out"]
    sweep_stale(out)
    assert running.is_dir()


def test_out_dot_works_in_place(home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    assert main(["prepare", str(home / "songs"), "--out", ".", "--workers", "0"]) == 0
    assert (here / "manifest.json").is_file() and here.stat().st_ino == inode
    assert main(["prepare", str(home / "songs"), "--out", ".", "--overwrite", "--workers", "0", "--split",
                 "1,0,0"]) == 0
    assert json.loads((here / "manifest.json").read_text())["splits"]["train"] == 4
    assert Path.cwd().stat().st_ino == inode and here.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "home"]  # nothing left beside it
    with staged_dir(".", True, command="test") as stage:  # the library function as generate uses it
        (stage / "sample_000.mid").write_bytes(b"MThd")
    assert sorted(p.name for p in here.iterdir()) == [MARKER, "sample_000.mid"]
    capsys.readouterr()


def test_check_out_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_out_dir(tmp_path / "f", True)


# ---------------------------------------------------------------- 5-10: bounded sizes, clean errors


@pytest.mark.parametrize("flags, message", [
    (["--length", "10000000"], "the limit is 16384 steps"),
    (["--length", "16", "--num-samples", "100000000"], "--num-samples must be in 1..10000"),
    (["--length", "16", "--batch-size", "100000000"], "--batch-size must be in 1..65536"),
    (["--length", "16384", "--num-samples", "8", "--batch-size", "8"], "exceeds the limit of 65536 steps"),
    (["--length", "16", "--sparsity-bias", "nan"], "--sparsity-bias must be a finite number"),
    (["--length", "16", "--tempo-bpm", "nan"], "--tempo-bpm must be"),
    (["--length", "16", "--temperature", "-1"], "--temperature must be > 0"),
    (["--length", "16", "--cfg-interval", "0.5", "0.1"], "0 <= LOW <= HIGH <= 1"),
])
def test_generate_bounds_every_size_before_allocating(flags, message, tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"never loaded: the request is refused first")
    assert main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in one_line_error(capsys, "generate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


def division_zero_midi(path: Path, division: int = 0, tempo_us: int = 500_000) -> Path:
    """A one-note MIDI file with the given header division and tempo (0 = the broken cases)."""
    track = (b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big") + b"\x00\x90\x3c\x40\x60\x80\x3c\x40\x00\xff\x2f\x00")
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + track)
    return path


def test_division_zero_and_tempo_zero(tmp_path: Path, make_midi, capsys) -> None:
    broken = division_zero_midi(tmp_path / "div0.mid")
    assert main(["convert", str(broken), str(tmp_path / "x.mid")]) == 2
    assert "division 0" in one_line_error(capsys, "convert")
    assert main(["render", str(broken), "--png", str(tmp_path / "x.png")]) == 2
    assert "division 0" in one_line_error(capsys, "render")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["div0.mid"]
    # tempo 0 (0 microseconds per quarter) is no tempo: the default, never 'Infinity'
    zero_tempo = division_zero_midi(tmp_path / "t0.mid", division=480, tempo_us=0)
    assert main(["convert", str(zero_tempo), str(tmp_path / "t0_out.mid")]) == 0
    import symusic

    assert symusic.Score(str(tmp_path / "t0_out.mid")).tempos[0].qpm == pytest.approx(120.0)
    # one broken file among generated ones is skipped, the report is written
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for i in range(3):
        make_midi(gen / f"g{i}.mid", tune(i))
        make_midi(ref / f"r{i}.mid", tune(i + 2))
    division_zero_midi(gen / "broken.mid")
    capsys.readouterr()
    assert main(["evaluate", "--generated", str(gen), "--reference", str(ref), "--out", str(tmp_path / "rep")]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [Path(s["file"]).name for s in report["generated"]["skipped"]] == ["broken.mid"]
    assert report["generated"]["pieces"] == 3


def test_non_utf8_names_and_unreadable_files(tmp_path: Path, make_midi, monkeypatch, capsys) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.mid"))
    make_midi(odd, tune())
    assert main(["render", str(odd), "--png", str(tmp_path / "odd.png")]) == 0
    assert (tmp_path / "odd.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    import fractalmidi.data.roll as roll_module

    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("locked.mid"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    locked = make_midi(tmp_path / "songs" / "locked.mid", tune())
    monkeypatch.setattr(roll_module, "open", refuse, raising=False)
    for argv in (["convert", str(locked), str(tmp_path / "c.mid")],
                 ["render", str(locked), "--png", str(tmp_path / "c.png")]):
        assert main(argv) == 2
        assert "cannot read the file (Permission denied)" in one_line_error(capsys, argv[0])


def test_unreadable_subfolder_is_listed_as_skipped(tmp_path: Path, make_midi, monkeypatch, capsys) -> None:
    src = tmp_path / "src"
    for i in range(3):
        make_midi(src / "ok" / f"s{i}.mid", tune(i))
    make_midi(src / "secret" / "hidden.mid", tune(5))
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("secret"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "0"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(Path(f["path"]).name, f["reason"]) for f in manifest["failed"]] == [
        ("secret", "cannot list the folder (Permission denied)")]
    assert manifest["pieces"] == 3
    capsys.readouterr()


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_is_one_line_and_leaves_nothing(home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import fractalmidi.data.cache as cache
    import fractalmidi.data.roll as roll_module
    import fractalmidi.outdir as outdir

    song = home / "songs" / "song0.mid"
    out = tmp_path / "out"
    before = snapshot(home)
    with monkeypatch.context() as patch:
        patch.setattr(roll_module, "write_midi", disk_full)
        assert main(["convert", str(song), str(out / "x.mid")]) == 2
        assert "No space left on device" in one_line_error(capsys, "convert")
    write_json = outdir.write_json

    def report_disk_full(path: Path, value: object) -> None:
        if Path(path).name == "report.json":
            disk_full()
        write_json(path, value)

    with monkeypatch.context() as patch:
        patch.setattr(outdir, "write_json", report_disk_full)
        assert main(["evaluate", "--generated", str(home / "songs"), "--reference", str(home / "songs"),
                     "--out", str(out)]) == 2
        assert "No space left on device" in one_line_error(capsys, "evaluate")
    with monkeypatch.context() as patch:
        patch.setattr(cache.CacheWriter, "finalize", disk_full)
        assert main(["prepare", str(home / "songs"), "--out", str(out), "--workers", "0"]) == 2
        assert "No space left on device" in one_line_error(capsys, "prepare")
    assert not out.exists() and snapshot(home) == before
    # the journaled work folder is kept: --resume finishes once there is room again
    assert main(["prepare", str(home / "songs"), "--out", str(out), "--workers", "0", "--resume"]) == 0
    assert (out / "manifest.json").is_file() and not (tmp_path / "out.partial").exists()


# ---------------------------------------------------------------- 11-17


def test_prepare_lock_refuses_a_second_run_on_the_same_work_folder(home: Path, tmp_path: Path, capsys) -> None:
    import fcntl

    partial = tmp_path / "data.partial"
    partial.mkdir()
    write_marker(partial, "prepare")
    handle = os.open(partial, os.O_RDONLY)  # another prepare holding the run
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        assert main(["prepare", str(home / "songs"), "--out", str(tmp_path / "data"), "--workers", "0",
                     "--resume"]) == 2
        assert "another 'fractalmidi prepare' is writing" in one_line_error(capsys, "prepare")
    finally:
        os.close(handle)
    assert main(["prepare", str(home / "songs"), "--out", str(tmp_path / "data"), "--workers", "0", "--resume"]) == 0


def test_sigterm_stops_prepare_with_its_workers_and_keeps_the_run_resumable(tmp_path: Path, make_midi) -> None:
    src, proc = _slow_prepare_under_way(tmp_path, make_midi, 40, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "fractalmidi prepare: interrupted"
    assert children and not _still_alive(children)  # no orphaned workers
    assert (tmp_path / "out.partial").is_dir() and not (tmp_path / "out").exists()
    done = subprocess.run([sys.executable, "-m", "fractalmidi", "prepare", str(src), "--out", str(tmp_path / "out"),
                           "--workers", "0", "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pieces"] == 40 - 28  # 12 distinct tunes


def _slow_prepare_under_way(tmp_path: Path, make_midi, count: int, **popen: Any) -> tuple[Path, subprocess.Popen]:
    """``fractalmidi prepare`` of ``count`` tunes with 2 slowed-down workers, returned once its first
    piece is journaled (so it has workers and a resumable partial run to lose)."""
    src = tmp_path / "src"
    for i in range(count):
        make_midi(src / f"s{i:02d}.mid", tune(i % 12))
    proc = subprocess.Popen(hooked_prepare(src, "--out", tmp_path / "out", "--workers", 2, slow_s=0.2), **popen)
    journal = tmp_path / "out.partial" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal.is_file() and journal.stat().st_size):
        time.sleep(0.05)
    return src, proc


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _still_alive(pids: list[int], patience_s: float = 30.0) -> list[int]:
    """The processes of ``pids`` still running after up to ``patience_s`` (exiting takes a moment)."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline and [pid for pid in pids if _alive(pid)]:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_duplicates_are_dropped_and_same_stem_pieces_share_a_split(tmp_path: Path, make_midi, capsys) -> None:
    src = tmp_path / "folk"
    for i in range(12):  # each tune as a melody and a (different) chords version, plus a byte copy
        make_midi(src / "melody" / f"tune{i:02d}.mid", tune(i))
        make_midi(src / "chords" / f"tune{i:02d}.mid", tune(i) + [(48 + i, 0, 8 * SIXTEENTH, 60)])
    make_midi(src / "zz_copies" / "same_as_tune00.mid", tune(0))  # walked after melody/
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "0", "--split",
                 "0.5,0.25,0.25"]) == 0
    assert "of which 1 duplicates" in capsys.readouterr().out
    from fractalmidi.data import PreparedData

    data = PreparedData(tmp_path / "out")
    assert data.manifest["duplicates"] == 1 and len(data) == 24
    [skipped] = data.manifest["failed"]
    assert skipped["path"].endswith("same_as_tune00.mid")
    assert skipped["reason"] == f"duplicate: same notes as {src / 'melody' / 'tune00.mid'}"
    split_of: dict[str, set[str]] = {}
    for i in range(len(data)):
        info = data.info(i)
        split_of.setdefault(Path(info["path"]).stem, set()).add(info["split"])
    assert all(len(splits) == 1 for splits in split_of.values())  # no tune in two splits
    assert {s for splits in split_of.values() for s in splits} == {"train", "valid", "test"}


def test_no_usable_midi_is_an_error_naming_the_reasons(tmp_path: Path, make_midi, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_text("not midi")
    (src / "b.mid").write_text("not midi either")
    make_midi(src / "silent.mid", [])
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    line = one_line_error(capsys, "prepare")
    assert "no usable piece" in line and "2 not a MIDI file" in line and "1 no notes" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# ---------------------------------------------------------------- training: bad numbers, leftovers

TRAIN_SMALL = ["data.crop_length=32", "training.batch_size=2", "data.num_workers=0", "training.limit_val_batches=0",
               "logging.log_images_every_n_steps=0", "logging.progress_bar=false", "training.warmup_steps=0"]


def _train_argv(data: Path, run: Path, *overrides: str) -> list[str]:
    config = Path(__file__).resolve().parents[1] / "configs" / "fractal_tiny.yaml"
    return ["train", str(config), f"data.root={data}", f"logging.output_dir={run}", *TRAIN_SMALL, *overrides]


@pytest.mark.data
def test_training_refuses_nan_and_stops_on_a_diverging_loss(prepared_jsb: Path, tmp_path: Path, capsys, monkeypatch,
                                                            torch_single_thread) -> None:
    run = tmp_path / "run"
    assert main(_train_argv(prepared_jsb, run, "training.lr=nan", "training.max_steps=2")) == 2
    assert "training.lr must be a finite number, got nan" in capsys.readouterr().err
    assert not run.exists()
    assert main(_train_argv(prepared_jsb, run, "training.lr=1e30", "training.grad_clip=0", "training.max_steps=6")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fractalmidi train: error: the training loss became nan"), err[-3:]
    assert not run.exists()  # no checkpoint was reached: nothing blocks the same output_dir
    # one step: exactly one last.ckpt; a torn temporary of a killed save is swept
    assert main(_train_argv(prepared_jsb, run, "training.max_steps=1")) == 0
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    torn = ckpts / f".last.ckpt.fractalmidi-{int(dead.stdout)}-0badc0de.tmp"
    torn.write_bytes(b"")
    assert main(["train", "--resume", str(run), "training.max_steps=2"]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    capsys.readouterr()
    # a full disk when the checkpoint is written: one line, and the fresh run leaves nothing
    import fractalmidi.train.checkpoint as checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "atomic_torch_save", disk_full)
        assert main(_train_argv(prepared_jsb, tmp_path / "full", "training.max_steps=1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "fractalmidi train: error: No space left on device", err[-3:]
    assert not (tmp_path / "full").exists()


def test_weights_only_refusal_names_what_the_file_is_not(tmp_path: Path, capsys) -> None:
    import torch

    evil = tmp_path / "evil.ckpt"
    torch.save({"fractalmidi": {}, "payload": Path("/etc")}, evil)  # a pickled Python object, not a tensor
    assert main(["generate", "--checkpoint", str(evil), "--length", "16", "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys, "generate")
    assert "not a safe FractalMIDI checkpoint" in line and "pickled Python objects" in line
    assert "weights_only=False" not in line and "succeed" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.ckpt"]


def test_config_sizes_are_checked_against_the_weights_before_building(tmp_path: Path) -> None:
    import resource

    import torch

    from fractalmidi.models import build
    from fractalmidi.train.checkpoint import load_generator

    model = build("fractal-tiny")
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    config = {"model": {"name": "fractal-tiny", "widths": [65536, 65536, 65536]}}
    path = tmp_path / "huge.ckpt"
    torch.save({"state_dict": state, "fractalmidi": {"config": config}}, path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match="does not match the model"):
        load_generator(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 512 * 1024  # KiB: nothing huge allocated


@pytest.mark.parametrize("damage, message", [
    ("truncate_rolls", "ends past the"),
    ("huge_start", "ends past the"),
    ("bad_split", "split code"),
    ("bad_info", "metadata offset"),
    ("index_shape", "not (N, 6) integers"),
])
def test_damaged_prepared_folder_is_one_line_for_train_and_evaluate(home: Path, tmp_path: Path, damage: str,
                                                                    message: str, capsys) -> None:
    from fractalmidi.data.cache import INDEX_FILE, ROLLS_FILE

    data = tmp_path / "data"
    assert main(["prepare", str(home / "songs"), "--out", str(data), "--workers", "0", "--split", "0.5,0,0.5"]) == 0
    index = np.load(data / INDEX_FILE)
    if damage == "truncate_rolls":
        rolls = (data / ROLLS_FILE).read_bytes()
        (data / ROLLS_FILE).write_bytes(rolls[: len(rolls) // 2 // 128 * 128])
    elif damage == "huge_start":
        index[0, 0] = 2**62
    elif damage == "bad_split":
        index[0, 2] = 7
    elif damage == "bad_info":
        index[-1, 5] = 10**12
    else:
        index = index[:, :3].astype(np.float32)
    np.save(data / INDEX_FILE, index)
    capsys.readouterr()
    assert main(["evaluate", "--generated", str(home / "songs"), "--reference", str(data), "--out",
                 str(tmp_path / "r")]) == 2
    assert "damaged prepared folder" in (line := one_line_error(capsys, "evaluate")) and message in line
    config = Path(__file__).resolve().parents[1] / "configs" / "fractal_tiny.yaml"
    assert main(["train", str(config), f"data.root={data}", f"logging.output_dir={tmp_path / 'run'}"]) == 2
    assert "damaged prepared folder" in one_line_error(capsys, "train")
    assert not (tmp_path / "r").exists() and not (tmp_path / "run").exists()


def test_sigkill_of_prepare_takes_its_workers_along(tmp_path: Path, make_midi) -> None:
    _, proc = _slow_prepare_under_way(tmp_path, make_midi, 20, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = _children(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    assert children and not _still_alive(children)


@pytest.mark.data
def test_generate_into_dot_with_an_odd_name_and_a_full_disk(tiny_fractal_checkpoint: Path, tmp_path: Path,
                                                            make_midi, monkeypatch, capsys) -> None:
    import fractalmidi.viz as viz

    here = tmp_path / "here"
    here.mkdir()
    song = make_midi(Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.mid")), [(60 + i % 7, i * SIXTEENTH, SIXTEENTH, 80)
                                                                           for i in range(32)])
    monkeypatch.chdir(here)
    argv = ["generate", "--checkpoint", str(tiny_fractal_checkpoint), "--out", ".", "--num-iter-list", "1", "1", "1",
            "--mode", "continue", "--input", str(song), "--condition-length", "16", "--length", "16",
            "--num-samples", "1"]
    assert main(argv) == 0  # an empty current folder is written in place
    names = sorted(p.name for p in here.iterdir())
    assert names == [MARKER, "input.mid", "input.png", "sample_000.mid", "sample_000.png", "samples.json"]
    assert main([*argv, "--overwrite"]) == 0 and Path.cwd() == here.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caf\udce9.mid", "here"]  # nothing left beside it
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(viz, "save_png", disk_full)
        assert main([*argv[:4], str(tmp_path / "new"), *argv[5:]]) == 2
        assert "No space left on device" in one_line_error(capsys, "generate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caf\udce9.mid", "here"]


def test_training_never_writes_its_run_into_the_data(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    for run in (data, data / "run"):
        assert main(_train_argv(data, run)) == 2
        assert "the input" in one_line_error(capsys, "train")
    assert sorted(p.name for p in data.iterdir()) == ["manifest.json"]


def test_two_prepares_on_one_run_the_second_stops_cleanly(tmp_path: Path, make_midi) -> None:
    src = tmp_path / "src"
    for i in range(12):
        make_midi(src / f"s{i:02d}.mid", tune(i))
    argv = [sys.executable, "-m", "fractalmidi", "prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "0"]
    first = subprocess.Popen(hooked_prepare(*argv[4:], slow_s=0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    journal = tmp_path / "out.partial" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal.is_file() and journal.stat().st_size):
        time.sleep(0.05)
    second = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    last_line = second.stderr.strip().splitlines()[-1]
    assert last_line.startswith("fractalmidi prepare: error: another 'fractalmidi prepare'")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pieces"] == 12


@pytest.mark.data
def test_export_never_overwrites_its_source(tiny_fractal_checkpoint: Path, tmp_path: Path, capsys) -> None:
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    shutil.copy(tiny_fractal_checkpoint, last)
    before = last.read_bytes()
    assert main(["export", str(run), str(last), "--overwrite"]) == 2
    assert "is the input" in one_line_error(capsys, "export")
    assert last.read_bytes() == before
    assert main(["export", str(run), str(run / "slim.ckpt")]) == 0  # beside it is fine
