"""The JSB chorales likelihood benchmark: frames counted as the protocol does, padding and window
context never scored, the published baselines reproduced, exact NLL of a micro model checked by
brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fractalmidi.cli import main
from fractalmidi.data import PreparedData
from fractalmidi.data.roll import codes_to_planes
from fractalmidi.evaluate import jsb
from fractalmidi.models import build

MICRO = {"patch_sizes": (2, 1), "generators": ("ar", "ar"), "widths": (16, 16), "depths": (1, 1), "heads": (2, 2),
         "head_width": 16, "num_bins": 2, "num_iter_list": (1, 1), "scan_order": "column_major", "frame_block": 0}
"""Binary, all-AR, time-first (one pitch band, unfolded): small enough to enumerate every roll of a few frames."""
ON = 90
"""Velocity of a sounding key in the test rolls (JSB has no dynamics; any non-zero is 'on')."""


@pytest.fixture(scope="module")
def quarter_data(jsb_dir, tmp_path_factory) -> PreparedData:
    out = tmp_path_factory.mktemp("jsbq") / "data"
    assert main(["prepare", str(jsb_dir), "--layout", "jsb-quarter", "--out", str(out), "--workers", "0"]) == 0
    return PreparedData(out)


def micro_model(pitches: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build("fractal-jsb", num_pitches=pitches, **MICRO).eval()
    # the head starts uniform (zero last layer): make the distribution informative
    torch.nn.init.normal_(model.head.out.weight, std=2.0)
    torch.nn.init.normal_(model.head.out.bias, std=1.0)
    return model


def all_rolls(pitches: int, steps: int) -> np.ndarray:
    """Every binary roll of ``pitches`` x ``steps`` as uint8 ``(N, 1, pitches, steps)``."""
    pixels = pitches * steps
    codes = np.arange(2**pixels)
    bits = (codes[:, None] >> np.arange(pixels)) & 1
    return (bits * ON).astype(np.uint8).reshape(-1, 1, pitches, steps)


def planes(rolls: np.ndarray) -> torch.Tensor:
    """uint8 rolls ``(N, 1, H, T)`` -> the model's float planes ``(N, 2, H, T)``."""
    return torch.from_numpy(codes_to_planes(rolls[:, 0]))


# ----- data and frame counting ------------------------------------------------------------------

def test_quarter_layout_keeps_the_split_and_every_frame(quarter_data, jsb_dir):
    raw = json.loads((jsb_dir / "jsb-chorales-quarter.json").read_text())
    assert quarter_data.manifest["splits"] == {"train": 229, "valid": 76, "test": 77}
    assert quarter_data.grid == "quarter"
    test = jsb.keyboard_frames(quarter_data, "test")
    assert jsb.count_frames(test) == jsb.TEST_FRAMES == sum(len(p) for p in raw["test"])
    # rests are frames too: the test split has 17 all-silent frames, and they are counted
    rests = sum(int((~piece.any(axis=1)).sum()) for piece in test)
    assert rests == sum(1 for piece in raw["test"] for frame in piece if not frame) == 17
    # the same notes, piece by piece, on the 88 keys
    first = raw["test"][0]
    assert [sorted((np.flatnonzero(f) + jsb.KEYBOARD_LOW).tolist()) for f in test[0]] == [sorted(f) for f in first]
    assert jsb.count_frames(jsb.keyboard_frames(quarter_data, "valid")) == 4602


def test_quarter_layout_refuses_another_grid(jsb_dir, tmp_path, capsys):
    assert main(["prepare", str(jsb_dir), "--layout", "jsb-quarter", "--grid", "16th",
                 "--out", str(tmp_path / "x"), "--workers", "0"]) == 2
    assert "only on the quarter grid" in capsys.readouterr().err


def test_transposition_stays_on_the_keyboard(quarter_data):
    """The benchmark config's pitch shifts keep every note of every split within MIDI 21..108."""
    from pathlib import Path

    from fractalmidi.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "fractal_jsb.yaml")
    low, high = config.data.pitch_shift
    assert high - low + 1 >= 12  # every key of the chorales is seen
    keys = np.concatenate([np.concatenate(jsb.keyboard_frames(quarter_data, s)) for s in ("train", "valid", "test")])
    sounding = np.flatnonzero(keys.any(axis=0)) + jsb.KEYBOARD_LOW
    assert sounding.min() + low >= jsb.KEYBOARD_LOW and sounding.max() + high <= jsb.KEYBOARD_HIGH


# ----- baselines ---------------------------------------------------------------------------------

def test_baselines_reproduce_the_published_figures(quarter_data):
    train, test = jsb.keyboard_frames(quarter_data, "train"), jsb.keyboard_frames(quarter_data, "test")
    assert round(jsb.unigram_nll(train, test), 3) == 11.061
    assert abs(jsb.markov_nll(train, test) - 10.47) < 0.005


def test_baselines_on_a_hand_computed_case():
    on = np.zeros((1, jsb.NUM_KEYS), bool)
    on[0, 0] = True
    train = [np.concatenate([on, ~on & False])]  # frame 0: key 0 sounds; frame 1: silence
    test = [on.copy()]
    # add-one: P(key 0) = (1 + 1) / (2 + 2) = 0.5, every other key (0 + 1) / 4 = 0.25 of sounding
    expected = -math.log(0.5) - (jsb.NUM_KEYS - 1) * math.log(0.75)
    assert jsb.unigram_nll(train, test) == pytest.approx(expected)
    # a one-frame test piece has no transitions: Markov = unigram
    assert jsb.markov_nll(train, test) == pytest.approx(expected)


# ----- windows, padding, exactness ---------------------------------------------------------------

@pytest.mark.parametrize(("length", "window", "stride"), [(5, 8, 4), (8, 8, 4), (9, 8, 4), (23, 8, 3), (100, 64, 32)])
def test_windows_score_every_frame_once(length, window, stride):
    counts = np.zeros(length, dtype=int)
    for w in jsb.plan_windows([length], window, stride):
        assert 0 <= w.start <= w.score_from < w.stop <= length and w.stop - w.start <= window
        counts[w.score_from : w.stop] += 1
    assert counts.tolist() == [1] * length


@pytest.mark.usefixtures("torch_single_thread")
def test_padding_is_never_scored_and_pieces_stay_normalised():
    """3-frame pieces padded to 4: over all 2**12 of them the probabilities sum to 1, and the
    padding's content changes nothing (it is a fixed silence the model conditions on, not scored)."""
    model = micro_model(pitches=4)
    rolls = all_rolls(4, 3)
    result = jsb.model_nll(model, list(rolls), window=4, stride=4, batch_size=4096)
    assert result["frames"] == 3 * len(rolls) and result["exact"]
    probs = np.exp(-np.asarray(result["per_piece_nats"]))
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert probs.max() > 10 / len(rolls)  # not the uniform distribution
    # the same pieces scored through nll directly: padding frames masked out give the same numbers
    padded = np.concatenate([rolls, np.zeros_like(rolls[..., :1])], axis=-1)
    scored = torch.ones(len(rolls), 4, dtype=torch.bool)
    scored[:, 3] = False
    direct = model.nll(planes(padded), scored_frames=scored)
    assert np.allclose(direct["nats"].numpy(), result["per_piece_nats"], atol=1e-5)
    assert torch.allclose(direct["nats_per_step"], direct["nats"] / 3)
    # unmasked, the padding's own terms are added: never less
    assert (model.nll(planes(padded))["nats"] - direct["nats"] >= -1e-5).all()


@pytest.mark.usefixtures("torch_single_thread")
def test_exact_nll_equals_brute_force_marginal():
    """One pitch band (2 keys), time-first scan: a padded final frame comes after every real pixel,
    so the unscored NLL of 3 frames must equal -log of the 4-frame model's probabilities summed over
    the padding frame's 4 values: a brute-force sum over completions."""
    model = micro_model(pitches=2, seed=1)
    full = all_rolls(2, 4)
    nats_full = model.nll(planes(full))["nats"].double().numpy()
    assert np.exp(-nats_full).sum() == pytest.approx(1.0, abs=1e-5)
    pieces = all_rolls(2, 3)
    last = all_rolls(2, 1)  # the 4 values of the final frame
    completed = np.concatenate([np.repeat(pieces, len(last), axis=0), np.tile(last, (len(pieces), 1, 1, 1))], axis=-1)
    nats = model.nll(planes(completed))["nats"].double().numpy()
    marginal = np.exp(-nats).reshape(len(pieces), len(last)).sum(axis=1)
    result = jsb.model_nll(model, list(pieces), window=4, stride=4, batch_size=64)
    assert np.allclose(result["per_piece_nats"], -np.log(marginal), atol=1e-5)


@pytest.mark.usefixtures("torch_single_thread")
def test_windowed_scoring_is_a_normalised_distribution():
    """6-frame pieces scored in 4-frame windows with stride 2 (frames 4-5 given frames 2-3 only):
    still a distribution over all 2**12 pieces, each frame scored once."""
    model = micro_model(pitches=2, seed=2)
    rolls = list(all_rolls(2, 6))
    result = jsb.model_nll(model, rolls, window=4, stride=2, batch_size=4096)
    assert result["frames"] == 6 * len(rolls) and result["windows"] == 2 * len(rolls)
    assert np.exp(-np.asarray(result["per_piece_nats"])).sum() == pytest.approx(1.0, abs=1e-4)


def test_transposed_moves_notes_and_flags_frames_that_lose_one():
    codes = np.zeros((1, 8, 3), np.uint8)
    codes[0, 1, 0] = codes[0, 6, 1] = codes[0, 3, 2] = ON
    up, lost = jsb.transposed(codes, 2, range(0, 8))
    assert np.flatnonzero(up[0, :, 0]).tolist() == [3] and np.flatnonzero(up[0, :, 2]).tolist() == [5]
    assert not up[0, :, 1].any() and lost[0].tolist() == [False, True, False]  # 6 + 2 is off the 8 rows
    down, lost = jsb.transposed(codes, -1, range(1, 8))  # row 0 is not a key of this model
    assert np.flatnonzero(down[0, :, 1]).tolist() == [5] and lost[0].tolist() == [True, False, False]


@pytest.mark.usefixtures("torch_single_thread")
def test_transposition_mixture_equals_its_brute_force_definition():
    """2-frame pieces on the middle 2 of the 4 keys a frame-by-frame model writes (MIDI 21-24),
    shifts -1, 0, +1: each frame's probability is the mean over shifts of the model's conditional of
    the moved frame given the moved past, with the conditionals taken from the model's joint over
    all 2**8 rolls by brute-force marginalisation."""
    torch.manual_seed(3)
    model = build("fractal-jsb", **{**MICRO, "frame_block": 2}).eval()
    torch.nn.init.normal_(model.head.out.weight, std=1.0)
    assert model.frame_by_frame and model.modelled_rows == range(21, 25)
    with pytest.raises(ValueError, match="frame-by-frame"):
        jsb.model_nll(micro_model(pitches=2), list(all_rolls(2, 2)), window=2, stride=2, shifts=(0, 1))
    shifts = (-1, 0, 1)
    full = np.zeros((256, 1, 128, 2), np.uint8)
    full[:, :, 21:25] = all_rolls(4, 2)
    lasts = np.zeros((16, 1, 128, 1), np.uint8)
    lasts[:, :, 21:25] = all_rolls(4, 1)
    joint = np.exp(-model.nll(planes(full))["nats"].double().numpy())
    assert joint.sum() == pytest.approx(1.0, abs=1e-5)
    index = {roll.tobytes(): i for i, roll in enumerate(full)}
    pieces = np.zeros((16, 1, 128, 2), np.uint8)
    pieces[:, :, 22:24] = all_rolls(2, 2)
    expected = []
    for piece in pieces:
        frame_probs = np.zeros((2, len(shifts)))
        for k, shift in enumerate(shifts):
            moved = np.roll(piece, shift, axis=1)
            p = joint[index[moved.tobytes()]]
            # P(frame 0 = moved[..., 0]) sums the joint over every second frame
            prefix = sum(joint[index[np.concatenate([moved[..., :1], last], -1).tobytes()]] for last in lasts)
            frame_probs[:, k] = prefix, p / prefix
        expected.append(-np.log(frame_probs.mean(1)).sum())
    result = jsb.model_nll(model, list(pieces), window=2, stride=2, shifts=shifts, batch_size=64)
    assert np.allclose(result["per_piece_nats"], expected, atol=1e-5)
    # a (sub-)distribution over these pieces: pieces sounding keys 21 or 24 take the rest
    assert 0 < np.exp(-np.asarray(result["per_piece_nats"])).sum() <= 1 + 1e-6
    single = jsb.model_nll(model, list(pieces), window=2, stride=2, batch_size=64)
    assert single["nats_per_frame"] != pytest.approx(result["nats_per_frame"])


# ----- the benchmark script end to end ----------------------------------------------------------

def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_jsb.py"
    spec = importlib.util.spec_from_file_location("bench_jsb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_baselines_print_the_published_rows(quarter_data, capsys):
    assert _bench().main(["--baselines", "--data", str(quarter_data.root)]) == 0
    out = capsys.readouterr().out
    assert "| per-key unigram (add-one, train split) | 11.061 |" in out
    assert "| per-key first-order Markov (add-one, train split) | 10.471 |" in out
    assert "DMM-Aug" in out and "test frames: 4725" in out


MICRO_TRAINING = ["model.widths=[16, 16, 16]", "model.heads=[2, 2, 2]", "model.depths=[1, 1, 1]", "model.head_width=16",
                  "data.crop_length=16", "training.batch_size=2", "training.max_steps=50", "training.warmup_steps=1",
                  "training.limit_val_batches=0", "logging.checkpoint_every_n_steps=1000"]


@pytest.mark.slow
@pytest.mark.usefixtures("torch_single_thread")
def test_bench_trains_within_its_budget_selects_exports_and_rescores(quarter_data, tmp_path, capsys):
    """A budget of 0.005 minutes stops a 50-step run early (training.max_minutes); the selected
    checkpoint is scored over all 4,725 test frames, exported small, and --eval-only agrees."""
    bench = _bench()
    exported = tmp_path / "micro.ckpt"
    args = ["--data", str(quarter_data.root), "--out", str(tmp_path / "bench"), "--minutes", "0.005", "--no-append",
            "--export", str(exported), "--stride", "8"]
    for override in MICRO_TRAINING:
        args += ["--set", override]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    one_pass, what, last = out.strip().splitlines()[-3:]
    assert last.startswith("test_nll_nats_per_frame=") and last.endswith(" frames=4725")
    assert one_pass.startswith("test_nll_nats_per_frame_one_pass=") and one_pass.endswith(" frames=4725")
    assert "mixture of its 12 training transpositions (-6..+5" in what  # configs/fractal_jsb.yaml: pitch_shift
    nll, nll_one_pass = (float(line.split()[0].split("=")[1]) for line in (last, one_pass))
    assert 0 < nll < 128 * math.log(2) and 0 < nll_one_pass < 128 * math.log(2)  # below the uniform binary model
    assert "exact validation NLL of the transposition mixture per checkpoint" in out
    assert "100 rows scored (MIDI 21-120)" in out and "upper bound on the 88-key NLL" in out
    assert "exact (all-AR levels)" in out
    step = torch.load(tmp_path / "bench" / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 1 <= step < 50
    assert exported.stat().st_size < 1 << 20
    assert bench.main(["--eval-only", "--checkpoint", str(exported), "--data", str(quarter_data.root),
                       "--stride", "8"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-3:] == [one_pass, what, last]
    assert bench.main(["--eval-only", "--checkpoint", str(exported), "--data", str(quarter_data.root),
                       "--stride", "8", "--one-pass"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == one_pass.replace("_one_pass=", "=")
