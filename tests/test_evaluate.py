"""``fractalmidi evaluate``: musical statistics, OA, Frechet distance and the report folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalmidi.cli import main
from fractalmidi.data import roll_to_midi
from fractalmidi.evaluate import evaluate
from fractalmidi.evaluate.features import SCALAR_FEATURES, notes_from_midi, notes_from_roll, piece_features
from fractalmidi.evaluate.metrics import frechet_distance, histogram_overlap, kde_overlap

CHORALE_VELOCITY = 90
NUM_CHORALES = 6
NUM_POP = 6


def write_midi(roll: np.ndarray, path: Path, tempo_bpm: float = 100.0) -> Path:
    """A MIDI file of a velocity roll (128, T) on the 16th grid."""
    roll_to_midi(roll, path, tempo_bpm=tempo_bpm)
    return path


def chorale_roll(voices_per_step: list[list[float]]) -> np.ndarray:
    """A JSB chorale (4 voices per 16th, -1/NaN = rest) as a velocity roll; held notes joined."""
    roll = np.zeros((128, len(voices_per_step)), dtype=np.uint8)
    for t, voices in enumerate(voices_per_step):
        for pitch in voices:
            if pitch == pitch and pitch >= 0:
                roll[int(pitch), t] = CHORALE_VELOCITY
    return roll


@pytest.fixture(scope="module")
def chorale_folder(jsb_dir: Path, tmp_path_factory) -> Path:
    pieces = json.loads((jsb_dir / "Jsb16thSeparated.json").read_text())["test"][:NUM_CHORALES]
    folder = tmp_path_factory.mktemp("chorales")
    for k, piece in enumerate(pieces):
        write_midi(chorale_roll(piece), folder / f"chorale_{k:02d}.mid")
    return folder


@pytest.fixture(scope="module")
def pop_folder(pop909_dir: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pop")
    for k in range(1, NUM_POP + 1):
        (folder / f"{k:03d}.mid").write_bytes((pop909_dir / f"{k:03d}.mid").read_bytes())
    return folder


def test_features_of_a_known_piece() -> None:
    """Two bars of 4/4: a held C-major triad, then a bar with one beat of E and three silent beats."""
    roll = np.zeros((128, 32), dtype=np.uint8)
    roll[[60, 64, 67], 0:16] = 100
    roll[76, 16:20] = 50
    feats = piece_features(notes_from_roll(roll))
    s = feats.scalars
    assert s["pitch_range"] == 16
    assert s["pitch_classes_used"] == 3
    assert s["scale_consistency"] == 1.0
    assert s["empty_beat_rate"] == pytest.approx(3 / 8)
    assert s["note_density"] == pytest.approx(4 / 8)
    assert s["duration_mean"] == pytest.approx((3 * 4 + 1) / 4)
    assert s["ioi_mean"] == pytest.approx(4.0)
    assert s["velocity_mean"] == pytest.approx((3 * 100 + 50) / 4)
    assert s["polyphony_mean"] == pytest.approx((16 * 3 + 4 * 1) / 20)
    # onset patterns of bar 1 and bar 2 are equal: both have one onset time, at the bar start
    assert s["groove_consistency"] == 1.0
    assert feats.histograms["duration"][15] == pytest.approx(0.75)  # three 16-step notes
    assert feats.histograms["polyphony"][[0, 2]] == pytest.approx([4 / 20, 16 / 20])
    assert np.isclose(feats.histograms["pitch"].sum(), 1.0)


def test_midi_and_roll_give_the_same_features(tmp_path: Path, jsb_dir: Path) -> None:
    piece = json.loads((jsb_dir / "Jsb16thSeparated.json").read_text())["train"][3]
    roll = chorale_roll(piece)
    from_roll = piece_features(notes_from_roll(roll))
    from_midi = piece_features(notes_from_midi(write_midi(roll, tmp_path / "c.mid")))
    for name in SCALAR_FEATURES:
        assert from_midi.scalars[name] == pytest.approx(from_roll.scalars[name]), name
    assert piece_features(notes_from_roll(np.zeros((128, 16), dtype=np.uint8))) is None


def test_overlap_and_frechet_bounds() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 200)
    assert kde_overlap(a, a) == pytest.approx(1.0, abs=1e-9)
    assert kde_overlap(a, a + 20.0) < 1e-3
    assert 0.5 < kde_overlap(a, a + 1.0) < 0.8  # two unit Gaussians one sigma apart overlap ~0.62
    assert kde_overlap(np.full(5, 3.0), np.full(7, 3.0)) == 1.0
    hist = rng.dirichlet(np.ones(12), size=10)
    assert histogram_overlap(hist, hist) == pytest.approx(1.0)
    assert histogram_overlap(np.eye(12)[:6], np.eye(12)[6:]) == 0.0
    x = rng.normal(size=(50, 5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x + 3.0, x) > 5 * 9 * 0.5  # mean shift of 3 stds in 5 dimensions


@pytest.mark.data
def test_evaluate_a_set_against_itself_and_against_pop(chorale_folder: Path, pop_folder: Path, tmp_path: Path) -> None:
    self_report = evaluate(chorale_folder, chorale_folder, tmp_path / "self", progress=False)
    oa = self_report["metrics"]["oa"]
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in oa.values()), oa
    assert self_report["metrics"]["frechet"] == pytest.approx(0.0, abs=1e-6)

    code = main(["evaluate", "--generated", str(chorale_folder), "--reference", str(pop_folder), "--out",
                 str(tmp_path / "pop")])
    assert code == 0
    report = json.loads((tmp_path / "pop" / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["pieces"] == {"generated": NUM_CHORALES, "reference": NUM_POP}
    assert metrics["oa_mean"] < 0.6
    assert metrics["oa"]["velocity_mean"] < 0.25  # chorales all at 90, POP909 spreads
    assert metrics["frechet"] > 50
    assert report["ceiling"]["kind"] == "half-vs-half"
    assert report["ceiling"]["metrics"]["oa_mean"] > metrics["oa_mean"]
    md = (tmp_path / "pop" / "report.md").read_text()
    assert "| pitch_range |" in md and "Frechet distance" in md
    for plot in report["plots"]:
        assert (tmp_path / "pop" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_bad_requests(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    roll = np.zeros((128, 16), dtype=np.uint8)
    roll[60, :4] = 80
    good = tmp_path / "good"
    good.mkdir()
    for k in range(2):
        write_midi(roll, good / f"{k}.mid")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    cases = [
        (["--generated", str(tmp_path / "nope"), "--reference", str(good)], "is not a folder"),
        (["--generated", str(empty), "--reference", str(good)], "holds no MIDI files"),
        (["--generated", str(good), "--reference", str(empty)], "holds 0 MIDI file(s)"),
        (["--generated", str(good), "--reference", str(good), "--checkpoint", str(tmp_path / "x.ckpt")], "not found"),
    ]
    for argv, expected in cases:
        assert main(["evaluate", *argv, "--out", str(tmp_path / "report")]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err
        assert not (tmp_path / "report").exists()
    assert main(["evaluate", "--generated", str(good), "--reference", str(good), "--out", str(taken)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.data
def test_evaluate_generated_set_against_prepared_data_with_nll(
    tiny_fractal_checkpoint: Path, prepared_jsb: Path, tmp_path: Path
) -> None:
    gen = tmp_path / "gen"
    argv = ["generate", "--checkpoint", str(tiny_fractal_checkpoint), "--out", str(gen), "--mode", "unconditional",
            "--length", "16", "--num-samples", "3", "--num-iter-list", "2", "1", "1", "--seed", "1"]
    assert main(argv) == 0
    (gen / "stray.mid").write_bytes((gen / "sample_000.mid").read_bytes())  # not listed in samples.json: ignored
    report = evaluate(gen, prepared_jsb, tmp_path / "report", checkpoint=tiny_fractal_checkpoint, nll_steps=32,
                      max_pieces=8, progress=False)
    assert report["generated"]["pieces"] + len(report["generated"]["skipped"]) == 3
    assert report["reference"]["kind"] == "prepared" and report["reference"]["pieces"] == 8
    # the train side of the ceiling plays the generated set: as many pieces as it (OA and FD depend on the count)
    assert report["ceiling"]["kind"] == "train-vs-test" and report["ceiling"]["pieces"] == [3, 8]
    nll = report["nll"]
    assert nll["family"] == "fractal"
    for name in ("reference", "generated"):
        assert nll[name]["pieces"] >= 1 and 0 < nll[name]["bits_per_pixel"] < 8  # 2 training steps: near uniform
        assert nll[name]["nats_per_step"] == pytest.approx(nll[name]["bits_per_pixel"] * 128 * np.log(2), rel=1e-3)
        assert nll[name]["exact"] is False  # fractal-tiny has MAR levels
    assert nll["exact"] is False and nll["estimate_reason"] == "MAR levels"
    on_disk = json.loads((tmp_path / "report" / "report.json").read_text())["nll"]
    assert on_disk["exact"] is False and on_disk["estimate_reason"] == "MAR levels"
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Likelihood" in md and "bits per pixel" in md
    bits = f"{nll['generated']['bits_per_pixel']:.4f}"
    assert f"| generated | {nll['generated']['pieces']} | {bits} (estimate: MAR levels) |" in md
    assert "one-sample Monte-Carlo estimate of an upper bound" in md


def _stand_in_checkpoint(tmp_path: Path, monkeypatch, model, pieces: int) -> tuple[Path, Path]:
    """A folder of ``pieces`` two-note MIDI files and a checkpoint path that loads as ``model``."""
    import fractalmidi.inference as inference

    monkeypatch.setattr(inference, "load_checkpoint",
                        lambda path, use_ema=True: inference.LoadedCheckpoint(Path(path), model, {}))
    roll = np.zeros((128, 32), dtype=np.uint8)
    roll[[60, 64], :16] = 80
    folder = tmp_path / "set"
    folder.mkdir()
    for k in range(pieces):
        write_midi(np.roll(roll, k, axis=0), folder / f"{k}.mid")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"stand-in")
    return folder, ckpt


def test_nll_of_an_all_ar_model_is_reported_exact(tmp_path: Path, monkeypatch) -> None:
    from fractalmidi.models import build

    torch.manual_seed(0)
    model = build("fractal-ar-tiny").eval()
    folder, ckpt = _stand_in_checkpoint(tmp_path, monkeypatch, model, pieces=2)
    report = evaluate(folder, folder, tmp_path / "report", checkpoint=ckpt, progress=False, nll_steps=16)
    nll = report["nll"]
    assert nll["exact"] is True and nll["estimate_reason"] is None
    assert nll["generated"]["exact"] is True and nll["generated"]["bits_per_pixel"] > 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"{nll['generated']['bits_per_pixel']:.4f} (exact)" in md
    assert "estimate" not in md.split("## Likelihood")[1].split("## Method")[0]


def test_nll_is_skipped_with_a_note_for_a_family_without_likelihood(tmp_path: Path, monkeypatch) -> None:
    from fractalmidi.models.base import Generator

    class NoLikelihood(Generator):
        family = "stand-in"

    model = NoLikelihood()
    folder, ckpt = _stand_in_checkpoint(tmp_path, monkeypatch, model, pieces=3)
    report = evaluate(folder, folder, tmp_path / "report", checkpoint=ckpt, progress=False)
    assert report["nll"]["note"] == "NLL skipped: the stand-in family has no tractable likelihood."
    assert "NLL skipped" in (tmp_path / "report" / "report.md").read_text()
