"""Style labels (:mod:`fractalmidi.data.style`): descriptors, bins, training items, fine-tuning and generation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fractalmidi.cli import main
from fractalmidi.data import PianoRollDataset, PreparedData, midi_to_roll, roll_to_midi
from fractalmidi.data.roll import ONSET_BIT, planes_to_codes
from fractalmidi.data.style import (
    STYLE_CLASSES,
    chromaticism,
    describe_style,
    draw_style,
    onset_rate,
    piece_style,
    style_edges,
    style_histogram,
    style_label,
    window_styles,
)
from fractalmidi.train.runner import plan, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VELOCITY = 90


def _codes(notes: list[tuple[int, int, int]], steps: int) -> np.ndarray:
    """Uint8 note codes ``(1, 128, steps)`` of ``(pitch, onset, length)`` notes at one velocity."""
    codes = np.zeros((1, 128, steps), dtype=np.uint8)
    for pitch, onset, length in notes:
        codes[0, pitch, onset:onset + length] = VELOCITY
        codes[0, pitch, onset] |= ONSET_BIT
    return codes


def test_descriptors_measure_rhythm_and_scale() -> None:
    c_major = [60, 62, 64, 65, 67, 69, 71, 72]
    scale = _codes([(p, 4 * i, 4) for i, p in enumerate(c_major)], 40)  # quarter notes, then 8 silent steps
    assert onset_rate(scale) == pytest.approx(8 / 32)  # first onset to last sounding step: 32 steps
    assert chromaticism(scale) == 0.0
    with_sharp = _codes([(p, 4 * i, 4) for i, p in enumerate([*c_major[:7], 66])], 32)  # F#: 7 of 8 in C or G
    assert chromaticism(with_sharp) == pytest.approx(1 / 8)
    sixteenths = _codes([(60 + i % 3, i, 1) for i in range(16)], 16)
    assert onset_rate(sixteenths) == 1.0
    assert piece_style(np.zeros((1, 128, 16), np.uint8)) is None


def test_labels_cut_each_descriptor_at_the_training_terciles() -> None:
    styles = [(rate, chroma) for rate in (0.1, 0.2, 0.3) for chroma in (0.0, 0.05, 0.1)] * 2
    edges = style_edges(styles)
    assert len(edges) == 2 and all(len(cuts) == 2 for cuts in edges)
    labels = [style_label(s, edges) for s in styles]
    assert style_histogram(labels) == [2] * STYLE_CLASSES  # every (rate, chroma) bin pair once per copy
    assert style_label((0.3, 0.0), edges) == 6 and style_label((0.1, 0.1), edges) == 2
    assert style_label((0.2, edges[1][0]), edges) == 3  # at an edge: the lower bin (pop's many diatonic windows)
    assert style_label(None, edges) == 4  # no notes: the middle of both
    assert describe_style(6, edges).startswith("onset rate high") and "chromaticism low" in describe_style(6, edges)
    rng = np.random.default_rng(0)
    drawn = [draw_style([0, 3, 0, 0, 0, 0, 0, 0, 1], rng.random()) for _ in range(400)]
    assert set(drawn) == {1, 8} and 0.65 < drawn.count(1) / 400 < 0.85


@pytest.mark.data
def test_dataset_items_carry_their_crops_style(prepared_jsb: Path) -> None:
    data = PreparedData(prepared_jsb)
    pieces = [data.piece(p) for p in data.split("train")]
    styles = window_styles(pieces, 32)
    assert len(styles) == sum(max(piece.shape[-1] // 32, 1) for piece in pieces)  # every window has notes
    edges = style_edges(styles)
    dataset = PianoRollDataset(data, crop_length=32, style_edges=edges)
    labels = []
    for index in range(40):
        item = dataset[index]
        assert item["roll"].shape == (2, 128, 32)
        codes = planes_to_codes(item["roll"][None].numpy())
        assert int(item["label"]) == style_label(piece_style(codes), edges)
        labels.append(int(item["label"]))
    assert len(set(labels)) > 3  # the chorales' crops differ in style


@pytest.mark.data
def test_style_labelled_fine_tune_then_generation(prepared_jsb: Path, tmp_path: Path) -> None:
    """A fine-tune with ``data.style_labels`` from an unconditional run starts every label at its start vector and
    pins the bins; generation draws labels like the training pieces', or takes the input's style."""
    torch.set_num_threads(1)
    common = [f"data.root={prepared_jsb}", "training.max_steps=1", "training.limit_val_batches=0",
              "data.crop_length=32", "training.batch_size=2", "logging.log_images_every_n_steps=0",
              "logging.progress_bar=false"]
    train(plan(str(CONFIGS / "fractal_tiny.yaml"), [*common, f"logging.output_dir={tmp_path / 'base'}"]))
    train(plan(str(CONFIGS / "fractal_tiny.yaml"), [*common, f"logging.output_dir={tmp_path / 'style'}",
                                                    f"training.init_from={tmp_path / 'base'}",
                                                    "data.style_labels=true", "training.lr=1e-12"]))
    config = yaml.safe_load((tmp_path / "style" / "config.yaml").read_text())
    assert config["model"]["num_classes"] == STYLE_CLASSES
    data = PreparedData(prepared_jsb)
    styles = window_styles([data.piece(p) for p in data.split("train")], 32)
    assert config["data"]["style_edges"] == style_edges(styles)
    assert config["data"]["style_counts"] == style_histogram([style_label(s, style_edges(styles)) for s in styles])
    base = torch.load(tmp_path / "base" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    tuned = torch.load(tmp_path / "style" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    table = tuned["model.labels.table.weight"]
    assert table.shape[0] == STYLE_CLASSES + 1
    assert torch.allclose(table, base["model.start"].expand_as(table), atol=1e-6)

    checkpoint = tmp_path / "style" / "checkpoints" / "last.ckpt"
    fast = ["--device", "cpu", "--num-iter-list", "1", "1", "1", "--length", "32", "--seed", "3"]
    assert main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "free"), *fast,
                 "--num-samples", "8", "--batch-size", "4"]) == 0
    samples = json.loads((tmp_path / "free" / "samples.json").read_text())["samples"]
    drawn = [s["label"] for s in samples]
    assert all(0 <= label < STYLE_CLASSES and config["data"]["style_counts"][label] > 0 for label in drawn)
    assert len(set(drawn)) > 1
    assert samples[0]["style"] == describe_style(drawn[0], config["data"]["style_edges"])
    assert main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "nine"), *fast,
                 "--label", str(STYLE_CLASSES)]) == 2  # one line, nothing written
    assert not (tmp_path / "nine").exists()
    assert main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "six"), *fast,
                 "--label", "6", "--num-samples", "2"]) == 0
    assert [s["label"] for s in json.loads((tmp_path / "six" / "samples.json").read_text())["samples"]] == [6, 6]

    opening = tmp_path / "opening.mid"
    roll_to_midi(data.piece(data.split("test")[0])[..., :32], opening)
    known = midi_to_roll(opening)[0][..., :16]
    assert main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cont"), *fast,
                 "--mode", "continue", "--input", str(opening), "--condition-length", "16",
                 "--num-samples", "2"]) == 0
    samples = json.loads((tmp_path / "cont" / "samples.json").read_text())["samples"]
    assert [s["label"] for s in samples] == [style_label(piece_style(known), config["data"]["style_edges"])] * 2

    from fractalmidi.inference import load_checkpoint
    from fractalmidi.studio.session import Session

    session = Session(load_checkpoint(checkpoint))  # the studio names the style a version was composed at
    try:
        result = session.generate(None, [[0, 32, 0, 127]], {"num_iter_list": [1, 1, 1]}, 5)
        assert re.search(r"\(seed 5, style [0-8]\)$", result["version"]["label"])
    finally:
        session.close()
