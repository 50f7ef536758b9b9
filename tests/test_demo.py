"""``fractalmidi demo``: the whole loop, shrunk (no training budget, 16-step pieces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fractalmidi.cli import main
from fractalmidi.demo import DEMO_ENTRIES, MARKER, run_demo
from fractalmidi.errors import UserError
from fractalmidi.outdir import MARKER as OUT_MARKER
from fractalmidi.outdir import claim_dir

STAGES = ["shipped", "data", "train", "generate", "evaluate"]


@pytest.mark.data
def test_demo_runs_the_whole_loop(prepared_jsb: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import fractalmidi.demo as demo

    # the loop's wiring is under test, not training or scoring: smaller batches and sets
    monkeypatch.setattr(demo, "TRAIN_OVERRIDES",
                        (*demo.TRAIN_OVERRIDES, "data.crop_length=32", "training.batch_size=2"))
    monkeypatch.setattr(demo, "MIN_TRAIN_STEPS", 2)
    monkeypatch.setattr(demo, "EVAL_NLL_STEPS", 16)
    monkeypatch.setattr(demo, "EVAL_MAX_PIECES", 8)
    out = tmp_path / "demo"
    argv = ["demo", "--minutes", "0", "--data", str(prepared_jsb), "--out", str(out), "--length", "16",
            "--num-samples", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / MARKER).read_text())
    names = [s["name"] for s in record["stages"]]
    assert [n for n in names if n != "render"] == STAGES  # render only where FluidSynth is installed
    for name in names:
        assert any(line.startswith(name) for line in printed.splitlines()), name
    assert "mean OA" in printed and "nats/step" in printed and "shipped 'bach'" in printed
    assert record["train_steps"] == 2  # --minutes 0: MIN_TRAIN_STEPS only
    assert sorted(p.name for p in (out / "run" / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert (out / "run" / "checkpoints" / "last.ckpt").is_file()
    assert record["shipped_model"] == "bach"
    for folder, count in (("unconditional", 2), ("continue", 1), ("inpaint", 1), ("shipped/unconditional", 2),
                          ("shipped/continue", 1), ("shipped/inpaint", 1)):
        samples = json.loads((out / folder / "samples.json").read_text())["samples"]
        assert len(samples) == count
        assert all((out / folder / s["png"]).is_file() and (out / folder / s["gif"]).is_file() for s in samples)
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["generated"]["pieces"] + len(report["generated"]["skipped"]) == 2
    assert report["ceiling"]["kind"] == "train-vs-test"
    assert report["nll"]["reference"]["bits_per_pixel"] > 0
    shipped = json.loads((out / "shipped" / "report" / "report.json").read_text())
    assert shipped["generated"]["pieces"] == 2 and shipped["nll"]["reference"]["bits_per_pixel"] > 0
    assert (out / "input" / "heldout_bwv1.6.mid").is_file()
    # a bad request fails before touching the previous demo; a good one replaces it
    before = (out / MARKER).stat().st_mtime_ns
    with pytest.raises(UserError, match="--num-samples must be at least 2"):
        run_demo(out, 0, data=prepared_jsb, num_samples=1)
    assert (out / MARKER).stat().st_mtime_ns == before
    claim_dir(out, overwrite=False, command="demo", entries=DEMO_ENTRIES)  # a previous demo is replaced
    assert [p.name for p in out.iterdir()] == [OUT_MARKER]


def test_demo_refuses_a_foreign_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["demo", "--out", str(out), "--minutes", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert main(["demo", "--out", str(out), "--minutes", "0", "--overwrite"]) == 2
    assert "not made by fractalmidi" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert main(["demo", "--out", str(tmp_path / "x"), "--data", str(tmp_path)]) == 2
    assert "not a prepared data folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
