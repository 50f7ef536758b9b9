"""``fractalmidi prepare``: bad input, --strict, refuse/overwrite/resume, layouts, splits, the cache."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fractalmidi.cli import main
from fractalmidi.data import PreparedData, load_jsb_chorales, midi_to_roll
from fractalmidi.data.cache import FORMAT_VERSION, JOURNAL_FILE, MANIFEST_FILE, ROLLS_FILE, CacheWriter
from fractalmidi.data.roll import ONSET_BIT, VELOCITY_BITS, canonical_codes
from fractalmidi.data.sources import BACH_VELOCITY, bach_chorale_paths, load_bach_chorales
from fractalmidi.data.split import assign_splits, parse_ratios, split_counts
from fractalmidi.errors import UserError
from fractalmidi.outdir import write_marker
from hooked_prepare import command as hooked_prepare

SIXTEENTH = 120
BAD_REASONS = {
    "empty.mid": "empty file",
    "text.mid": "not a MIDI file",
    "truncated.mid": "unreadable MIDI",
    "silent.mid": "no notes",
    "crash.mid": "worker process crashed",
    "huge.mid": "too long",
}


def melody(seed: int, bars: int = 4) -> list[tuple[int, int, int, int]]:
    """A little random melody plus bass (pitch, start, duration, velocity) on 16ths."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0
    while t < bars * 16:
        length = int(rng.choice([1, 2, 4]))
        notes.append((int(rng.integers(60, 80)), t * SIXTEENTH, length * SIXTEENTH, int(rng.integers(40, 120))))
        if t % 8 == 0:
            notes.append((int(rng.integers(36, 48)), t * SIXTEENTH, 8 * SIXTEENTH, 70))
        t += length
    return notes


def prepare(*args: str, crash_on: str | None = None) -> subprocess.CompletedProcess:
    """``fractalmidi prepare ARGS`` in a new process; ``crash_on``: its converter dies on that file."""
    argv = (hooked_prepare(*args, crash_on=crash_on) if crash_on
            else [sys.executable, "-m", "fractalmidi", "prepare", *map(str, args)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory, make_midi, huge_note_midi) -> Path:
    """Eight good songs in nested folders plus every kind of bad file."""
    root = tmp_path_factory.mktemp("midi")
    for i in range(8):
        make_midi(root / f"set{i % 2}" / f"song{i}.mid", melody(i), tempo=80 + 5 * i)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mid").write_bytes(b"")
    (bad / "text.mid").write_text("MIDI? no, just text\n")
    whole = (root / "set0" / "song0.mid").read_bytes()
    (bad / "truncated.mid").write_bytes(whole[: len(whole) // 2])
    make_midi(bad / "silent.mid", [])
    make_midi(bad / "crash.mid", melody(99))
    huge_note_midi(bad / "huge.mid")
    return root


def test_bad_input_is_skipped_with_reasons(midi_dir, tmp_path):
    out = tmp_path / "out"
    done = prepare(midi_dir, "--out", out, "--workers", 2, crash_on="crash.mid")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    reasons = {Path(f["path"]).name: f["reason"] for f in manifest["failed"]}
    assert set(reasons) == set(BAD_REASONS)
    for name, reason in BAD_REASONS.items():
        assert reason in reasons[name], (name, reasons[name])
    assert manifest["pieces"] == 8 and sum(manifest["splits"].values()) == 8
    assert manifest["grid"] == "16th" and manifest["settings"]["layout"] == "midi-dir"
    # memory stayed bounded: no process (prepare or its workers) came near a huge allocation
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1024 * 1024  # KiB
    data = PreparedData(out)
    assert data.manifest["total_steps"] == sum(data.steps(i) for i in range(len(data)))
    for i in range(len(data)):
        info = data.info(i)
        expected, meta = midi_to_roll(info["path"])
        assert np.array_equal(data.piece(i), expected)
        assert info["tempo_bpm"] == pytest.approx(meta["tempo_bpm"])
        lo, hi = data.pitch_range(i)
        rows = np.flatnonzero(expected[0].any(axis=1))
        assert (lo, hi) == (rows.min(), rows.max())


def test_strict_stops_naming_the_file(midi_dir, tmp_path):
    done = prepare(midi_dir, "--out", tmp_path / "out", "--workers", 0, "--strict")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]  # (the rest is the progress bar)
    assert len(errors) == 1 and errors[0].startswith("fractalmidi prepare: error: "), done.stderr
    assert "bad/empty.mid" in errors[0] and "empty file" in errors[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_existing_output_is_refused_unless_overwrite_or_resume(midi_dir, tmp_path, capsys):
    out = tmp_path / "out"
    good = midi_dir / "set1"
    assert main(["prepare", str(good), "--out", str(out), "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["prepare", str(good), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    first = (out / ROLLS_FILE).read_bytes()
    assert main(["prepare", str(good), "--out", str(out), "--workers", "0", "--overwrite", "--split", "1,0,0"]) == 0
    assert json.loads((out / "manifest.json").read_text())["splits"] == {"train": 4, "valid": 0, "test": 0}
    assert (out / ROLLS_FILE).read_bytes() == first
    assert main(["prepare", str(good), "--out", str(out), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_resume_continues_a_killed_run(midi_dir, tmp_path):
    good = midi_dir / "set0"
    reference = tmp_path / "ref"
    assert prepare(good, "--out", reference, "--workers", 0).returncode == 0
    out = tmp_path / "out"
    # kill the run inside song4 (in-process parsing: the abort takes prepare itself down)
    killed = prepare(good, "--out", out, "--workers", 0, crash_on="song4.mid")
    assert killed.returncode != 0 and (tmp_path / "out.partial").is_dir() and not out.exists()
    refused = prepare(good, "--out", out, "--workers", 0)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = prepare(good, "--out", out, "--workers", 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / ROLLS_FILE).read_bytes() == (reference / ROLLS_FILE).read_bytes()
    assert np.array_equal(np.load(out / "index.npy"), np.load(reference / "index.npy"))
    assert not (tmp_path / "out.partial").exists()


def test_journal_recovery_drops_torn_and_unwritten_records(tmp_path):
    roll = np.zeros((1, 128, 5), dtype=np.uint8)
    roll[0, 60] = 90
    writer = CacheWriter(tmp_path)
    writer.add("a.mid", roll, {"tempo_bpm": 120.0})
    writer.add("b.mid", None, "empty file")
    writer.add("c.mid", roll * 0 + 1, {"tempo_bpm": 100.0})
    writer.flush()
    # a killed run: record d's frames never hit the disk, and the journal ends in a torn line
    with open(tmp_path / JOURNAL_FILE, "a") as journal:
        journal.write(json.dumps({"key": "d.mid", "ok": True, "start": 10, "steps": 5, "split": None,
                                  "meta": {}}) + "\n")
        journal.write('{"key": "e.mid", "ok": tr')
    with open(tmp_path / ROLLS_FILE, "ab") as rolls:
        rolls.write(b"\x07" * 100)  # half-written frames
    again = CacheWriter(tmp_path)
    assert again.done_keys == {"a.mid", "b.mid", "c.mid"}
    assert (again.pieces, again.failed, again.end_step) == (2, 1, 10)
    assert (tmp_path / ROLLS_FILE).stat().st_size == 10 * 128
    again.close()


def test_split_ratios_and_minimum_counts():
    assert split_counts(909, parse_ratios("99.8,0.1,0.1"), 1) == (907, 1, 1)
    assert split_counts(909, parse_ratios("99.8,0.1,0.1"), 5) == (899, 5, 5)
    assert split_counts(909, parse_ratios("0.8,0.1,0.1"), 1) == (727, 91, 91)
    assert split_counts(2, parse_ratios("0.8,0.1,0.1"), 1) == (1, 1, 0)
    assert split_counts(10, parse_ratios("1,0,0"), 1) == (10, 0, 0)
    codes = assign_splits(909, parse_ratios("99.8,0.1,0.1"), 1, seed=3)
    assert np.bincount(codes, minlength=3).tolist() == [907, 1, 1]
    assert np.array_equal(codes, assign_splits(909, parse_ratios("99.8,0.1,0.1"), 1, seed=3))
    assert not np.array_equal(codes, assign_splits(909, parse_ratios("99.8,0.1,0.1"), 1, seed=4))


@pytest.mark.data
def test_jsb_layout_keeps_its_own_split(jsb_dir, tmp_path):
    out = tmp_path / "jsb"
    assert main(["prepare", str(jsb_dir), "--out", str(out), "--workers", "0", "--split", "1,0,0"]) == 0
    data = PreparedData(out)
    assert data.manifest["settings"]["layout"] == "jsb"
    assert data.manifest["splits"] == {"train": 229, "valid": 76, "test": 77}
    chorales = load_jsb_chorales(jsb_dir)
    first_test = data.split("test")[0]
    assert np.array_equal(data.piece(first_test), chorales["test"][0])
    assert data.info(first_test)["path"] == "jsb:test/0"
    assert np.array_equal(data.piece(0), chorales["train"][0])


@pytest.mark.data
def test_pop909_layout_takes_only_the_songs(pop909_dir, tmp_path):
    root = tmp_path / "POP909"
    for number in ("001", "002", "003"):
        (root / number / "versions").mkdir(parents=True)
        song = (pop909_dir / f"{number}.mid").read_bytes()
        (root / number / f"{number}.mid").write_bytes(song)
        (root / number / "versions" / "v1.mid").write_bytes(song)
    out = tmp_path / "out"
    assert main(["prepare", str(root), "--out", str(out), "--workers", "0", "--split", "99.8,0.1,0.1"]) == 0
    data = PreparedData(out)
    assert data.manifest["settings"]["layout"] == "pop909"
    assert data.manifest["splits"] == {"train": 1, "valid": 1, "test": 1}
    assert [Path(data.info(i)["path"]).name for i in range(3)] == ["001.mid", "002.mid", "003.mid"]


def test_bach_chorales_come_from_the_music21_corpus():
    assert len(bach_chorale_paths()) >= 300
    name, roll, meta = next(load_bach_chorales(limit=1))
    assert name.startswith("bwv") and roll.shape[:2] == (1, 128)
    assert set(np.unique(roll & VELOCITY_BITS)) == {0, BACH_VELOCITY}
    assert set(np.unique(roll)) == {0, BACH_VELOCITY, BACH_VELOCITY | ONSET_BIT}
    assert np.array_equal(canonical_codes(roll), roll)
    assert meta["on_grid"] == 1.0 and 4 <= np.count_nonzero(roll[0, :, 0]) <= 8  # a chord of the voices
    assert np.all(roll[0, :, 0][roll[0, :, 0] > 0] & ONSET_BIT)  # ...that starts there


@pytest.mark.parametrize("argv, message", [
    (["prepare", "--out", "x"], "give SRC"),
    (["prepare", "/no/such/folder", "--out", "x"], "not a folder"),
    (["prepare", ".", "--out", "x", "--grid", "8th"], "unknown grid"),
    (["prepare", ".", "--out", "x", "--split", "0.8,0.2"], "--split"),
    (["prepare", ".", "--dataset", "bach", "--out", "x"], "not both"),
    (["prepare", "empty", "--out", "x", "--workers", "0"], "no MIDI files"),
    (["prepare", "empty", "--out", "x", "--workers", "-1"], "--workers"),
])
def test_prepare_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(argv) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    lines = capsys.readouterr().err.splitlines()
    err = [line for line in lines if line.strip() and not line.startswith("prepare:")]  # not the progress bar
    assert len(err) == 1 and message in err[0] and err[0].startswith("fractalmidi prepare: error:")


def test_aria_layout_defaults_to_frames_per_second(midi_dir, tmp_path, capsys):
    out = tmp_path / "aria"
    good = midi_dir / "set0"
    assert main(["prepare", str(good), "--out", str(out), "--layout", "aria", "--workers", "0"]) == 0
    data = PreparedData(out)
    assert data.grid == "fps:16" and data.manifest["settings"]["layout"] == "aria"
    expected, _ = midi_to_roll(data.info(0)["path"], grid="fps:16")
    assert np.array_equal(data.piece(0), expected)
    # a resumed run must use the same settings
    (tmp_path / "aria2.partial").mkdir()
    (tmp_path / "aria2.partial" / "settings.json").write_text(json.dumps(data.manifest["settings"]))
    write_marker(tmp_path / "aria2.partial", "prepare")  # a run of ours, not a stranger's folder
    capsys.readouterr()
    assert main(["prepare", str(good), "--out", str(tmp_path / "aria2"), "--layout", "aria", "--grid", "16th",
                 "--resume"]) == 2
    assert "different settings (grid)" in capsys.readouterr().err


@pytest.fixture
def prepared_set(midi_dir, tmp_path) -> Path:
    out = tmp_path / "prepared"
    assert main(["prepare", str(midi_dir / "set1"), "--out", str(out), "--workers", "0"]) == 0
    return out


def test_manifest_names_the_format_and_rolls_hold_note_codes(prepared_set):
    data = PreparedData(prepared_set)
    assert data.manifest["format"] == f"fractalmidi-prepared/{FORMAT_VERSION}" and FORMAT_VERSION == 3
    frames = np.fromfile(prepared_set / ROLLS_FILE, dtype=np.uint8).reshape(-1, 128)
    assert frames.shape[0] == data.manifest["total_steps"]
    assert np.any(frames & ONSET_BIT) and np.any((frames > 0) & ~(frames & ONSET_BIT).astype(bool))
    for i in range(len(data)):
        piece = data.piece(i)
        assert np.array_equal(canonical_codes(piece), piece)
        # every note of the source starts with an onset bit: as many onsets as quantised notes
        _, meta = midi_to_roll(data.info(i)["path"])
        assert np.count_nonzero(piece & ONSET_BIT) == meta["notes"]


def test_a_crop_starting_inside_a_note_starts_that_note(prepared_set):
    data = PreparedData(prepared_set)
    piece = data.piece(0)[0]
    # a step where some note is held (sounding without an onset)
    held = np.argwhere((piece > 0) & ((piece & ONSET_BIT) == 0))
    pitch, step = (int(v) for v in held[len(held) // 2])
    crop = data.crop(0, step, 16)
    assert crop[pitch, 0] == (piece[pitch, step] & VELOCITY_BITS) | ONSET_BIT
    assert np.array_equal(crop & VELOCITY_BITS, piece[:, step : step + 16] & VELOCITY_BITS)
    assert np.array_equal(crop[:, 1:], piece[:, step + 1 : step + 16])  # only the first column changes
    # past the end: silence
    tail = data.crop(0, data.steps(0) - 4, 8)
    assert not tail[:, 4:].any() and np.array_equal(tail[:, :4] & VELOCITY_BITS, piece[:, -4:] & VELOCITY_BITS)


@pytest.mark.parametrize("version, hint", [(1, "older format .* without note onsets, beats moved onto the grid"),
                                           (2, "older format .* without beats moved onto the grid"),
                                           (FORMAT_VERSION + 1, "newer fractalmidi")])
def test_other_cache_formats_are_refused_with_what_to_do(prepared_set, tmp_path, capsys, version, hint):
    manifest = json.loads((prepared_set / MANIFEST_FILE).read_text())
    manifest["format"] = f"fractalmidi-prepared/{version}"
    (prepared_set / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=hint) as err:
        PreparedData(prepared_set)
    assert "re-run 'fractalmidi prepare'" in str(err.value) and "\n" not in str(err.value)
    assert str(prepared_set) in str(err.value) and f"version {version}" in str(err.value)
    # the command line says so in one line, exit status 2
    capsys.readouterr()
    config = Path(__file__).resolve().parents[1] / "configs" / "fractal_tiny.yaml"
    assert main(["train", str(config), f"data.root={prepared_set}", f"logging.output_dir={tmp_path / 'run'}"]) == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1 and "re-run 'fractalmidi prepare'" in err_lines[0], err_lines


def test_a_manifest_of_another_tool_is_refused(prepared_set):
    manifest = json.loads((prepared_set / MANIFEST_FILE).read_text())
    manifest["format"] = "something-else/2"
    (prepared_set / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not a fractalmidi prepared folder"):
        PreparedData(prepared_set)
