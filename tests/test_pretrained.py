"""Shipped models: export a run to a slim checkpoint, find it by name, generate with --model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fractalmidi import pretrained
from fractalmidi.cli import main
from fractalmidi.errors import UserError
from fractalmidi.inference import load_checkpoint
from fractalmidi.train.export import export_generator


@pytest.fixture
def shipped_dir(tiny_fractal_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pretrained folder holding the tiny checkpoint exported as 'tiny-bach', with its card."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    export_generator(tiny_fractal_checkpoint, folder / "tiny-bach.ckpt", half=True)
    (folder / "tiny-bach.md").write_text("# tiny-bach\n\nsummary: a tiny test model of chorales\n")
    (folder / "no-card.ckpt").write_bytes(b"")  # a checkpoint without a card is not a shipped model
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", folder)
    return folder


def test_export_keeps_the_generator_and_drops_training_state(tiny_fractal_checkpoint: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.ckpt"
    half = tmp_path / "half.ckpt"
    export_generator(tiny_fractal_checkpoint, full)
    export_generator(tiny_fractal_checkpoint, half, half=True)
    original = load_checkpoint(tiny_fractal_checkpoint).model.state_dict()
    exact = load_checkpoint(full).model.state_dict()
    halved = load_checkpoint(half).model.state_dict()
    assert all(torch.equal(original[k], exact[k]) for k in original)
    assert all(torch.allclose(original[k], halved[k], rtol=1e-3, atol=1e-3) for k in original)
    saved = torch.load(half, weights_only=True)
    assert set(saved) == {"state_dict", "fractalmidi"}  # no optimizer, scheduler or loop state
    assert half.stat().st_size < full.stat().st_size < tiny_fractal_checkpoint.stat().st_size
    assert load_checkpoint(half).grid == load_checkpoint(tiny_fractal_checkpoint).grid


def test_models_lists_shipped_models_with_their_summary(shipped_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert pretrained.shipped() == ["tiny-bach"]
    assert main(["models"]) == 0
    assert "tiny-bach  a tiny test model of chorales" in capsys.readouterr().out


def test_generate_with_a_shipped_model_by_name(shipped_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["generate", "--model", "tiny-bach", "--out", str(out), "--length", "32", "--num-samples", "1"]) == 0
    record = json.loads((out / "samples.json").read_text())
    assert record["checkpoint"] == str(shipped_dir / "tiny-bach.ckpt")
    assert (out / "sample_000.mid").is_file()
    assert main(["generate", "--checkpoint", "tiny-bach", "--out", str(tmp_path / "b"), "--length", "32"]) == 0
    assert main(["generate", "--model", "no-card", "--out", str(tmp_path / "c")]) == 2
    assert "not a file, a run folder or a shipped model (tiny-bach)" in capsys.readouterr().err


def test_training_goes_on_from_a_shipped_model_in_a_new_folder(shipped_dir: Path, prepared_jsb: Path,
                                                                 tiny_fractal_checkpoint: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """A checkpoint outside a run folder (a shipped model) is continued in a new folder, never beside itself."""
    from fractalmidi.train.runner import plan

    full = shipped_dir / "full.ckpt"
    shutil.copy(tiny_fractal_checkpoint, full)  # a full training checkpoint, as 'bach' is
    assert main(["train", "--resume", str(full), f"data.root={prepared_jsb}"]) == 2
    assert "give logging.output_dir=NEW_FOLDER" in capsys.readouterr().err
    job = plan(None, [f"data.root={prepared_jsb}", f"logging.output_dir={tmp_path / 'more'}"], resume=str(full))
    assert job.run_dir == tmp_path / "more" and job.resume_from == full
    with pytest.raises(UserError, match="must be a new or empty folder"):
        plan(None, [f"data.root={prepared_jsb}", f"logging.output_dir={shipped_dir}"], resume=str(full))
    names = sorted(p.name for p in shipped_dir.iterdir())
    assert names == ["full.ckpt", "no-card.ckpt", "tiny-bach.ckpt", "tiny-bach.md"]
