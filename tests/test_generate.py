"""``fractalmidi generate``: canvases and masks, request checks, and every mode end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from fractalmidi.canvas import continue_plan, inpaint_plan, unconditional_plan
from fractalmidi.cli import main
from fractalmidi.data.roll import ONSET_BIT, VELOCITY_BITS, codes_to_planes
from fractalmidi.errors import UserError

MULTIPLE = 16


def piece(steps: int = 50) -> np.ndarray:
    """A small piece of note codes: a held C4, a moving bass line, a soft high note struck twice."""
    roll = np.zeros((1, 128, steps), dtype=np.uint8)
    roll[0, 60, : steps - 10] = 90
    roll[0, 60, 0] |= ONSET_BIT
    for t in range(0, steps, 4):
        roll[0, 36 + (t // 4) % 5, t : t + 3] = 70
        roll[0, 36 + (t // 4) % 5, t] |= ONSET_BIT
    roll[0, 84, 20:30] = 40
    roll[0, 84, [20, 25]] |= ONSET_BIT
    return roll


def _planes(codes: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(codes_to_planes(codes))


def test_unconditional_plan_and_accepted_lengths() -> None:
    plan = unconditional_plan(64, MULTIPLE)
    assert plan.canvas.shape == plan.mask.shape == (1, 2, 128, 64) and plan.mask.all() and plan.length == 64
    assert not plan.canvas.any()
    with pytest.raises(UserError, match=r"--length 100 .* multiple of 16 \(nearest: 96, 112\)"):
        unconditional_plan(100, MULTIPLE)
    with pytest.raises(UserError, match=r"nearest: 16\)"):
        unconditional_plan(5, MULTIPLE)


def test_continue_plan_keeps_the_prefix_and_pads_the_end() -> None:
    roll = piece()
    plan = continue_plan(roll, 20, 30, MULTIPLE)
    assert plan.canvas.shape[-1] == 64 and plan.length == 50
    assert plan.canvas.shape == plan.mask.shape == (1, 2, 128, 64)
    assert torch.equal(plan.canvas[0, :, :, :20], _planes(roll[0, :, :20]))
    assert plan.canvas[0, 1, 84, 20:].sum() == 0 and plan.canvas[0, 1, 60, 0] == 1  # onsets of the prefix only
    assert not plan.mask[..., :20].any() and plan.mask[..., 20:].all()
    assert (plan.canvas[..., 20:] == 0).all()
    with pytest.raises(UserError, match=r"--condition-length 51 .* 50 steps; accepted: 1\.\.50"):
        continue_plan(roll, 51, 10, MULTIPLE)


def test_inpaint_plan_pads_with_known_silence_and_hides_the_region() -> None:
    roll = piece()
    plan = inpaint_plan(roll, 8, 24, 50, 100, MULTIPLE)
    assert plan.canvas.shape[-1] == 64 and plan.length == 50
    expected = np.zeros((128, 64), dtype=bool)
    expected[50:101, 8:24] = True
    assert plan.mask.shape == (1, 2, 128, 64)
    assert np.array_equal(plan.mask[0, 0].numpy(), expected) and np.array_equal(plan.mask[0, 1].numpy(), expected)
    assert (plan.canvas[plan.mask] == 0).all()  # the model never sees the notes it rewrites
    known = ~plan.mask[0, :, :, :50]
    original = _planes(roll[0])
    assert torch.equal(plan.canvas[0, :, :, :50][known], original[known])
    assert (plan.canvas[..., 50:] == 0).all()  # padded with (known) silence
    assert plan.region == {"start": 8, "end": 24, "pitch_low": 50, "pitch_high": 100}
    for args, message in [
        ((30, 60, None, None), r"need 0 <= start < end <= 50"),
        ((24, 24, None, None), r"need 0 <= start < end <= 50"),
        ((-1, 10, None, None), r"need 0 <= start < end <= 50"),
        ((0, 10, 70, 60), r"need 0 <= low <= high <= 127"),
        ((0, 10, 0, 128), r"need 0 <= low <= high <= 127"),
    ]:
        with pytest.raises(UserError, match=message):
            inpaint_plan(roll, *args, MULTIPLE)


# ----------------------------------------------------------------- end to end on a real tiny checkpoint

INPUT_STEPS = 40
"""Not a multiple of 16: inpainting pads with known silence and crops back."""
INPUT_TEMPO = 87.0
FAST = ["--num-iter-list", "2", "1", "1"]


@pytest.fixture(scope="module")
def chorale_midi(prepared_jsb: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A held-out JSB chorale cut to INPUT_STEPS, as MIDI, and its quantised roll as read back."""
    from fractalmidi.data import PreparedData, midi_to_roll, roll_to_midi

    data = PreparedData(prepared_jsb)
    roll = data.piece(data.split("test")[0])[..., :INPUT_STEPS]
    path = tmp_path_factory.mktemp("input") / "chorale.mid"
    roll_to_midi(roll, path, tempo_bpm=INPUT_TEMPO)
    read, _ = midi_to_roll(path)
    return path, read


def _generate(checkpoint: Path, out: Path, *argv: str) -> dict:
    code = main(["generate", "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu", *FAST, *argv])
    assert code == 0
    return json.loads((out / "samples.json").read_text())


def _roll_of(path: Path, steps: int) -> np.ndarray:
    """The written MIDI re-read (symusic, through midi_to_roll), padded to ``steps``."""
    from fractalmidi.data import midi_to_roll

    roll = midi_to_roll(path)[0][0] if symusic.Score(str(path)).note_num() else np.zeros((128, 0), np.uint8)
    out = np.zeros((128, steps), dtype=np.uint8)
    out[:, : roll.shape[1]] = roll[:, :steps]
    return out


def _notes_away_from(path: Path, keep) -> set[tuple[int, int, int, int]]:
    """(pitch, onset, end, velocity) in 16th steps of the notes for which ``keep(pitch, onset, end)``."""
    score = symusic.Score(str(path))
    assert len(score.tempos) and score.tempos[0].qpm == pytest.approx(INPUT_TEMPO, rel=1e-3)
    step = score.ticks_per_quarter / 4
    notes = set()
    for track in score.tracks:
        for n in track.notes:
            onset, end = round(n.time / step), round(n.end / step)
            if keep(n.pitch, onset, end):
                notes.add((n.pitch, onset, end, n.velocity))
    return notes


@pytest.mark.data
def test_unconditional_writes_every_file_and_is_reproducible(tiny_fractal_checkpoint: Path, tmp_path: Path) -> None:
    args = ["--mode", "unconditional", "--length", "16", "--num-samples", "2", "--batch-size", "2", "--seed", "5"]
    record = _generate(tiny_fractal_checkpoint, tmp_path / "a", *args, "--gif")
    assert record["mode"] == "unconditional" and record["seed"] == 5 and record["family"] == "fractal"
    assert record["checkpoint"] == str(tiny_fractal_checkpoint.resolve())
    assert record["sample_options"]["num_iter_list"] == [2, 1, 1]
    assert record["steps"] == 16 and record["config_file"].endswith("inference_default.yaml")
    assert [s["mid"] for s in record["samples"]] == ["sample_000.mid", "sample_001.mid"]
    for sample in record["samples"]:
        assert (tmp_path / "a" / sample["png"]).read_bytes()[:4] == b"\x89PNG"
        from PIL import Image

        with Image.open(tmp_path / "a" / sample["gif"]) as gif:
            assert gif.n_frames > 1  # generation steps, coarse to fine, then the result
        assert symusic.Score(str(tmp_path / "a" / sample["mid"])).note_num() == sample["notes"]
    again = _generate(tiny_fractal_checkpoint, tmp_path / "b", *args)
    for first, second in zip(record["samples"], again["samples"]):
        assert (tmp_path / "a" / first["mid"]).read_bytes() == (tmp_path / "b" / second["mid"]).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging folders left


@pytest.mark.data
def test_continue_keeps_the_opening_notes(tiny_fractal_checkpoint: Path, chorale_midi, tmp_path: Path) -> None:
    path, source = chorale_midi
    kept = 20
    record = _generate(tiny_fractal_checkpoint, tmp_path / "out", "--mode", "continue", "--input", str(path),
                       "--condition-length", str(kept), "--length", "12", "--num-samples", "1")
    assert record["steps"] == kept + 12 and record["padded_steps"] == 32
    assert record["tempo_bpm"] == pytest.approx(INPUT_TEMPO)
    written = tmp_path / "out" / record["samples"][0]["mid"]
    assert np.array_equal(_roll_of(written, kept + 12)[:, :kept], source[0, :, :kept])
    before = lambda pitch, onset, end: end < kept  # noqa: E731  (notes that cannot touch the new part)
    assert _notes_away_from(written, before) == _notes_away_from(path, before)
    assert _notes_away_from(written, before)  # the opening really has notes


@pytest.mark.data
def test_inpaint_changes_nothing_outside_the_region(tiny_fractal_checkpoint: Path, chorale_midi,
                                                    tmp_path: Path) -> None:
    path, source = chorale_midi
    steps = source.shape[-1]
    start, end, low, high = 8, 24, 40, 70
    record = _generate(tiny_fractal_checkpoint, tmp_path / "out", "--mode", "inpaint", "--input", str(path),
                       "--start", str(start), "--end", str(end), "--pitch-low", str(low), "--pitch-high", str(high),
                       "--num-samples", "2", "--temperature", "1.5")
    assert record["steps"] == steps and record["padded_steps"] == 48
    assert record["region"] == {"start": start, "end": end, "pitch_low": low, "pitch_high": high}
    region = np.zeros((128, steps), dtype=bool)
    region[low : high + 1, start:end] = True
    # a note the region cuts into starts again right after it: the only onset that may appear outside
    cut = np.zeros_like(region)
    cut[low : high + 1, end] = (source[0, low : high + 1, end] > 0) & (source[0, low : high + 1, end] & ONSET_BIT == 0)
    changed, velocities_kept = False, True
    for sample in record["samples"]:
        written = tmp_path / "out" / sample["mid"]
        roll = _roll_of(written, steps)
        assert np.array_equal(roll[~region] > 0, source[0][~region] > 0)  # what sounds outside still sounds
        outside = ~region & ~cut
        assert np.array_equal(roll[outside] & ONSET_BIT, source[0][outside] & ONSET_BIT)  # and starts where it did
        velocities_kept &= np.array_equal(roll[~region] & VELOCITY_BITS, source[0][~region] & VELOCITY_BITS)
        changed |= not np.array_equal(roll[region], source[0][region])
        away = lambda pitch, onset, e: e < start or onset > end or not low <= pitch <= high  # noqa: E731
        assert _notes_away_from(written, away) == _notes_away_from(path, away)
    assert changed  # the model did write into the region
    assert _roll_of(tmp_path / "out" / "input.mid", steps).tolist() == source[0].tolist()
    assert velocities_kept  # a note reaching into the region keeps its known loudness outside it


@pytest.fixture(scope="module")
def mismatched_checkpoint(tiny_fractal_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a config that no longer matches its weights (wider level 0)."""
    ckpt = torch.load(tiny_fractal_checkpoint, map_location="cpu", weights_only=True)
    ckpt["fractalmidi"]["config"]["model"]["widths"] = [96, 32, 32]
    path = tmp_path_factory.mktemp("mismatch") / "other.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.mark.data
def test_bad_requests_fail_in_one_line_and_write_nothing(
    tiny_fractal_checkpoint: Path, mismatched_checkpoint: Path, chorale_midi, tmp_path: Path, capsys
) -> None:
    path, source = chorale_midi
    steps = source.shape[-1]
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    inp = ["--mode", "inpaint", "--input", str(path)]
    cases = [
        ([*inp, "--start", "8", "--end", "999"], f"need 0 <= start < end <= {steps}"),
        ([*inp, "--start", "10", "--end", "10"], f"need 0 <= start < end <= {steps}"),
        ([*inp, "--start", "0", "--end", "8", "--pitch-low", "80", "--pitch-high", "70"],
         "need 0 <= low <= high <= 127"),
        ([*inp, "--start", "0"], "needs --start STEP and --end STEP"),
        (["--mode", "inpaint", "--input", str(tmp_path / "nope.mid"), "--start", "0", "--end", "8"],
         "nope.mid not found"),
        (["--mode", "continue", "--input", str(path), "--condition-length", "999", "--length", "16"],
         f"accepted: 1..{steps}"),
        (["--mode", "unconditional", "--length", "20"], "multiple of 16 (nearest: 16, 32)"),
        (["--mode", "unconditional", "--length", "16", "--steps", "4"], "--steps not used by the fractal family"),
        (["--mode", "unconditional", "--length", "16", "--start", "3"], "--start not used by --mode unconditional"),
        (["--mode", "unconditional", "--length", "16", "--num-samples", "0"], "--num-samples must be in 1..10000"),
        (["--mode", "unconditional", "--length", "16", "--num-samples", "100000000"],
         "--num-samples must be in 1..10000"),
        (["--mode", "unconditional", "--length", "16", "--batch-size", "100000000"],
         "--batch-size must be in 1..65536"),
        (["--mode", "unconditional", "--length", "10000000"], "the limit is 16384 steps"),
        (["--mode", "unconditional", "--length", "16384", "--num-samples", "8", "--batch-size", "8"],
         "exceeds the limit of 65536 steps"),
        (["--mode", "unconditional", "--length", "16", "--sparsity-bias", "nan"],
         "--sparsity-bias must be a finite number"),
        (["--mode", "unconditional", "--length", "16", "--temperature", "-1"], "--temperature must be > 0"),
        (["--mode", "unconditional", "--length", "16", "--tempo-bpm", "nan"], "--tempo-bpm must be"),
        (["--mode", "unconditional", "--length", "16", "--num-iter-list", "0", "1", "1"],
         "--num-iter-list must be whole"),
        (["--checkpoint", str(mismatched_checkpoint), "--mode", "unconditional", "--length", "16"],
         "does not match the model"),
        (["--checkpoint", str(junk), "--mode", "unconditional", "--length", "16"], "junk.ckpt"),
        (["--checkpoint", str(tmp_path / "missing.ckpt"), "--mode", "unconditional", "--length", "16"], "not found"),
        (["--config", str(tmp_path / "none.yaml"), "--mode", "unconditional", "--length", "16"],
         "none.yaml' not found"),
    ]
    out = tmp_path / "out"
    for argv, expected in cases:
        full = ["generate", "--checkpoint", str(tiny_fractal_checkpoint), "--out", str(out), *FAST, *argv]
        assert main(full) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, (argv, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.ckpt"], argv  # nothing half-written

    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = ["generate", "--checkpoint", str(tiny_fractal_checkpoint), "--out", str(out), *FAST,
            "--mode", "unconditional", "--length", "16", "--num-samples", "1"]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main([*argv, "--overwrite"]) == 2 and "not made by fractalmidi" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]  # a folder of the user's is never replaced
    ours = tmp_path / "ours"
    assert main([*argv[:4], str(ours), *argv[5:]]) == 0
    assert main([*argv[:4], str(ours), *argv[5:], "--overwrite"]) == 0  # one fractalmidi made: replaced
    assert sorted(p.name for p in ours.iterdir()) == [".fractalmidi-output.json", "sample_000.mid", "sample_000.png",
                                                      "samples.json"]


@pytest.fixture(scope="module")
def tiny_jit_checkpoint(train_tiny) -> Path:
    """``last.ckpt`` of jit-tiny trained a couple of steps (generation tests ask nothing of quality)."""
    return train_tiny("jit_tiny.yaml")


def _velocities(path: Path) -> list[int]:
    return [n.velocity for track in symusic.Score(str(path)).tracks for n in track.notes]


@pytest.mark.data
def test_silence_below_flag_for_jit_only(tiny_jit_checkpoint: Path, tiny_fractal_checkpoint: Path, tmp_path: Path,
                                         capsys) -> None:
    args = ["--mode", "unconditional", "--length", "32", "--num-samples", "1", "--seed", "3", "--steps", "2",
            "--device", "cpu"]
    # trained on four-part chorales, the checkpoint caps its pieces at four voices (pinned by training)
    assert main(["generate", "--checkpoint", str(tiny_jit_checkpoint), "--out", str(tmp_path / "capped"), *args]) == 0
    assert json.loads((tmp_path / "capped" / "samples.json").read_text())["sample_options"]["max_voices"] == 4
    capped = symusic.Score(str(tmp_path / "capped" / "sample_000.mid"), ttype="quarter")
    spans = [(n.time, n.end) for t in capped.tracks for n in t.notes]
    assert spans and max(sum(a <= s < b for a, b in spans) for s, _ in spans) <= 4  # voices peak at a note start
    args += ["--max-voices", "0"]  # uncapped, where silence_below alone decides
    notes = {}
    for value in (0.0, 0.4, 0.6):
        out = tmp_path / f"silence_{value}"
        assert main(["generate", "--checkpoint", str(tiny_jit_checkpoint), "--out", str(out), *args,
                     "--silence-below", str(value)]) == 0
        record = json.loads((out / "samples.json").read_text())
        assert record["family"] == "jit" and record["sample_options"]["silence_below"] == value
        notes[value] = _velocities(out / "sample_000.mid")
    # a barely trained JiT predicts ~0 in [-1, 1] everywhere, i.e. ~0.5: a threshold below that keeps
    # every pixel as a note, one above it silences them all; its velocity bins are near uniform, so the
    # notes draw velocities from all over 1..127
    assert len(notes[0.0]) == len(notes[0.4]) > 100 and max(notes[0.4]) - min(notes[0.4]) > 80
    assert notes[0.6] == []

    capsys.readouterr()  # drop the progress bars
    out = tmp_path / "fractal"
    assert main(["generate", "--checkpoint", str(tiny_fractal_checkpoint), "--out", str(out), *FAST,
                 "--mode", "unconditional", "--length", "16", "--silence-below", "0.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--silence-below not used by the fractal family" in err
    assert not out.exists()
