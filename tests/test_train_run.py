"""Training end to end on real prepared JSB chorales: both families, the run folder, TensorBoard,
safe checkpoints, exact resume after SIGKILL, and two-process DDP on CPU."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from fractalmidi.cli import main
from fractalmidi.errors import UserError
from fractalmidi.train.callbacks import GIF_DIR
from fractalmidi.train.checkpoint import load_generator, resolve_checkpoint
from fractalmidi.train.runner import plan, train

pytestmark = pytest.mark.data

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STEPS = 3
"""N: checkpoints every N steps; runs go to 2N."""
KILL_TIMEOUT_S = 300
SMALL = [
    "data.crop_length=32", "training.batch_size=2", "data.num_workers=0", "training.warmup_steps=2",
    f"training.val_every_n_steps={STEPS}", "training.limit_val_batches=2", f"logging.checkpoint_every_n_steps={STEPS}",
    "logging.log_every_n_steps=1", "logging.progress_bar=false", "logging.num_image_samples=1",
]
JIT_SMALL = [*SMALL, "model.steps=3", f"logging.log_images_every_n_steps={STEPS}"]
FRACTAL_SMALL = [*SMALL, "model.num_iter_list=[2, 1, 1]", "logging.log_images_every_n_steps=0"]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # two cores shared by several processes: no oversubscription
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return env


def _train(config: str, overrides: list[str]) -> object:
    return train(plan(str(CONFIGS / config), overrides))


@pytest.fixture(scope="module")
def straight_run(prepared_jsb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jit-tiny trained 2N steps in one go, with validation, images and GIFs every N steps."""
    run = tmp_path_factory.mktemp("train") / "straight"
    torch.set_num_threads(1)
    result = _train("jit_tiny.yaml", [*JIT_SMALL, f"data.root={prepared_jsb}", f"logging.output_dir={run}",
                                      f"training.max_steps={2 * STEPS}"])
    assert result.global_step == 2 * STEPS
    return run


@pytest.mark.parametrize(("config", "overrides"), [
    ("fractal_tiny.yaml", FRACTAL_SMALL),
    ("jit_tiny.yaml", JIT_SMALL),
    ("jit_tiny.yaml", [*JIT_SMALL, "hardware.precision=bf16-mixed", "training.accumulate_grad_batches=2"]),
])
def test_fast_dev_run_each_family(prepared_jsb: Path, tmp_path: Path, config: str, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    result = _train(config, [*overrides, f"data.root={prepared_jsb}", f"logging.output_dir={run}",
                             "training.fast_dev_run=true"])
    assert result.global_step == 1
    assert math.isfinite(result.metrics["train/loss"]) and result.metrics["train/loss"] > 0
    assert math.isfinite(result.metrics["val/loss"]) and result.metrics["val/loss"] > 0
    assert not run.exists()  # a smoke test writes nothing


def test_run_folder_contents(straight_run: Path) -> None:
    ckpts = sorted(p.name for p in (straight_run / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "last.ckpt", "step_00000003.ckpt", "step_00000006.ckpt"]
    assert (straight_run / "config.yaml").read_text().startswith("model:\n  name: jit-tiny\n")
    gifs = sorted(p.name for p in (straight_run / "gifs").iterdir())
    assert gifs == ["step_00000003_sample_0.gif", "step_00000006_sample_0.gif"]
    from PIL import Image

    with Image.open(straight_run / "gifs" / gifs[-1]) as gif:  # (identical frames are merged by the encoder)
        assert gif.format == "GIF" and gif.size[1] >= 128 and gif.n_frames >= 1


def test_training_pins_the_voice_cap_of_four_part_chorales(straight_run: Path) -> None:
    import yaml

    model = yaml.safe_load((straight_run / "config.yaml").read_text())["model"]
    assert model["max_voices"] == 4  # the preset's -1: from the data; the JSB chorales keep four voices


def test_tensorboard_holds_scalars_and_images(straight_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(straight_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/v_loss", "train/x_mse", "val/loss", "lr", "samples/s"):
        assert tag in tags["scalars"], tag
    for tag in ("images/ground_truth", "images/generated", "images/generation_preview"):
        assert tag in tags["images"], tag
        assert [e.step for e in events.Images(tag)] == [STEPS, 2 * STEPS]
    lrs = [e.value for e in events.Scalars("lr")]
    lr = yaml.safe_load((straight_run / "config.yaml").read_text())["training"]["lr"]
    assert max(lrs) == pytest.approx(lr)  # warmup reaches training.lr ...
    assert lrs[0] == pytest.approx(0.5 * lr) and lrs[-1] < 0.3 * lr  # ... from half of it, then cosine decay
    assert len(events.Scalars("val/loss")) == 2
    image = events.Images("images/generated")[0]
    assert image.height == 128 and image.width == 512  # 32 steps, each 16 pixels wide


def test_checkpoints_load_weights_only_with_config_and_versions(straight_run: Path) -> None:
    for path in sorted((straight_run / "checkpoints").glob("*.ckpt")):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        extra = ckpt["fractalmidi"]
        assert extra["config"]["model"]["name"] == "jit-tiny"
        assert extra["config"]["training"]["max_steps"] == 2 * STEPS
        assert {"fractalmidi", "torch", "lightning"} <= set(extra["versions"])
        assert all(type(v) is str for v in extra["versions"].values())
        assert extra["ema"]["num_updates"] == ckpt["global_step"]
        assert extra["data_position"]["batches"] == ckpt["global_step"]


def test_load_generator_uses_ema_weights(straight_run: Path) -> None:
    last = straight_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    model, config = load_generator(straight_run)  # a run folder means its last.ckpt
    raw, _ = load_generator(last, use_ema=False)
    assert config["model"]["name"] == "jit-tiny" and not model.training
    ema = ckpt["fractalmidi"]["ema"]["shadows"][0]
    for name, param in model.named_parameters():
        assert torch.equal(param, ema[name])
    for name, param in raw.named_parameters():
        assert torch.equal(param, ckpt["state_dict"][f"model.{name}"])
    assert any(not torch.equal(ema[n], ckpt["state_dict"][f"model.{n}"]) for n in ema)
    canvas = torch.zeros(1, 2, 128, 32)
    out = model.sample(canvas, torch.ones_like(canvas, dtype=torch.bool), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 2, 128, 32) and 0 <= out.min() and out.max() <= 1
    assert set(out[:, 1].unique().tolist()) <= {0.0, 1.0}


def test_resume_refuses_a_different_model(straight_run: Path) -> None:
    with pytest.raises(UserError, match=r"different model \(model.depth: checkpoint 2 vs now 3\)"):
        plan(None, ["model.depth=3"], resume=str(straight_run))
    with pytest.raises(UserError, match="not a FractalMIDI training checkpoint|cannot load checkpoint"):
        bogus = straight_run.parent / "bogus.ckpt"
        torch.save({"state_dict": {}}, bogus)
        load_generator(bogus)
    ckpt = torch.load(straight_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["fractalmidi"]["config"]["model"]["depth"] = 3  # a config that no longer matches the weights
    edited = straight_run.parent / "edited.ckpt"
    torch.save(ckpt, edited)
    with pytest.raises(UserError, match=r"does not match the model: missing \d+ \(e.g. .*blocks\.2\."):
        load_generator(edited, use_ema=False)


@pytest.mark.slow
def test_sigkill_then_resume_matches_straight_run(straight_run: Path, prepared_jsb: Path, tmp_path: Path) -> None:
    """2N steps straight == N steps, SIGKILL, resume to 2N: weights, EMA, optimizer, schedule, data."""
    run = tmp_path / "killed"
    # same schedule (decay over 2N steps) but asked to go on for long: the kill surely lands mid-run
    cmd = [sys.executable, "-m", "fractalmidi", "train", str(CONFIGS / "jit_tiny.yaml"), *JIT_SMALL,
           f"data.root={prepared_jsb}", f"logging.output_dir={run}", "training.max_steps=1000",
           f"training.decay_steps={2 * STEPS}"]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    killed_at = torch.load(resolve_checkpoint(run), map_location="cpu", weights_only=True)["global_step"]
    assert STEPS <= killed_at < 2 * STEPS

    assert main(["train", "--resume", str(run), f"training.max_steps={2 * STEPS}"]) == 0

    a = torch.load(straight_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    for shadow_a, shadow_b in zip(a["fractalmidi"]["ema"]["shadows"], b["fractalmidi"]["ema"]["shadows"]):
        for name, value in shadow_a.items():
            assert torch.equal(value, shadow_b[name]), f"ema {name}"
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert a["fractalmidi"]["data_position"] == b["fractalmidi"]["data_position"] == {"batches": 2 * STEPS}
    assert torch.equal(a["fractalmidi"]["rng"]["torch"], b["fractalmidi"]["rng"]["torch"])


@pytest.mark.slow
def test_two_process_ddp_on_cpu(prepared_jsb: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "fractalmidi", "train", str(CONFIGS / "jit_tiny.yaml"), *JIT_SMALL,
           f"data.root={prepared_jsb}", f"logging.output_dir={run}", f"training.max_steps={STEPS}",
           "logging.log_images_every_n_steps=0", "hardware.accelerator=cpu", "hardware.devices=2",
           "hardware.strategy=ddp"]
    proc = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=KILL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt", "step_00000003.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "step_00000003.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    assert ckpt["fractalmidi"]["world_size"] == 2
    assert ckpt["fractalmidi"]["data_position"] == {"batches": STEPS}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_clean_stop_then_resume_matches_for_fractal(prepared_jsb: Path, tmp_path: Path) -> None:
    """FractalGen (random MAR masks every step): N steps, stop, resume to 2N == 2N straight."""
    torch.set_num_threads(1)
    common = [*FRACTAL_SMALL, f"data.root={prepared_jsb}", "training.limit_val_batches=0",
              f"training.decay_steps={2 * STEPS}"]
    _train("fractal_tiny.yaml", [*common, f"logging.output_dir={tmp_path / 'straight'}",
                                 f"training.max_steps={2 * STEPS}"])
    _train("fractal_tiny.yaml", [*common, f"logging.output_dir={tmp_path / 'split'}", f"training.max_steps={STEPS}"])
    halfway = _weights(tmp_path / "split")
    train(plan(None, [f"training.max_steps={2 * STEPS}"], resume=str(tmp_path / "split")))
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert any(not torch.equal(halfway[k], resumed[k]) for k in halfway)  # it did train on
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_checkpoint_records_the_grid_of_its_data(prepared_jsb: Path, tmp_path: Path) -> None:
    """data.grid comes from the prepared data's manifest into config.yaml and every checkpoint, so
    inference knows the grid after the data folder is gone; a data.grid that disagrees is refused."""
    import json

    from fractalmidi.inference import load_checkpoint

    data, run, grid = tmp_path / "data", tmp_path / "run", "fps:8"
    shutil.copytree(prepared_jsb, data)  # the same rolls, labelled with a non-default grid (JSB is 16th-only)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["grid"] = manifest["settings"]["grid"] = grid
    (data / "manifest.json").write_text(json.dumps(manifest))
    args = [*FRACTAL_SMALL, f"data.root={data}", "training.limit_val_batches=0", "training.max_steps=1"]
    with pytest.raises(UserError, match=r"data.grid '16th' does not match the grid 'fps:8'"):
        _train("fractal_tiny.yaml", [*args, f"logging.output_dir={tmp_path / 'refused'}", "data.grid=16th"])
    torch.set_num_threads(1)
    _train("fractal_tiny.yaml", [*args, f"logging.output_dir={run}"])
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["grid"] == grid
    shutil.rmtree(data)
    loaded = load_checkpoint(run)
    assert loaded.config["data"]["grid"] == grid and loaded.grid == grid


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the run folder was copied
def test_resume_with_more_steps_follows_the_new_schedule(straight_run: Path, tmp_path: Path) -> None:
    """`--resume RUN training.max_steps=3N` after a 2N-step run: the LR decays over 3N from step 2N,
    instead of staying at the finished schedule's floor (0)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fractalmidi.train.schedule import WarmupCosine

    torch.set_num_threads(1)
    run = tmp_path / "longer"
    shutil.copytree(straight_run, run)  # the fixture's run stays untouched for the exactness tests
    train(plan(None, [f"training.max_steps={3 * STEPS}", "logging.log_images_every_n_steps=0"], resume=str(run)))
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("lr")}
    config = yaml.safe_load((run / "config.yaml").read_text())["training"]
    schedule = WarmupCosine(config["warmup_steps"], 3 * STEPS, config["min_lr_ratio"])
    resumed = [logged[step] for step in range(2 * STEPS, 3 * STEPS)]
    assert resumed == pytest.approx([config["lr"] * schedule(step) for step in range(2 * STEPS, 3 * STEPS)])
    assert min(resumed) > 0.0


def test_resume_into_a_new_folder_leaves_the_run_untouched(straight_run: Path, tmp_path: Path) -> None:
    """`--resume RUN logging.output_dir=NEW` goes on in NEW (it used to ignore NEW and write into RUN);
    NEW must be new or empty, and without it the run goes on in its own folder."""
    torch.set_num_threads(1)
    run, new = tmp_path / "run", tmp_path / "new"
    shutil.copytree(straight_run, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    job = plan(None, [f"logging.output_dir={new}", f"training.max_steps={2 * STEPS + 2}"], resume=str(run))
    assert job.run_dir == new and job.resume_from == run / "checkpoints" / "last.ckpt"
    train(job)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    assert torch.load(new / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * STEPS + 2
    with pytest.raises(UserError, match="must be a new or empty folder"):
        plan(None, [f"logging.output_dir={new}"], resume=str(run))
    assert plan(None, [], resume=str(run)).run_dir == run


CHORALE_ACTIVE_FRACTION = 4 / 128
"""Four voices on 128 pitch rows: the share of sounding pixels in a chorale roll."""


def test_fractal_tiny_config_learns_note_density_quickly(prepared_jsb: Path, tmp_path: Path) -> None:
    """The shipped fractal_tiny optimiser settings (lr, betas, grad clip) leave the noise stage within
    40 steps: samples hold a few notes per step, not a roll full of noise (the old lr 1e-3 sampled
    ~97% sounding pixels here)."""
    torch.set_num_threads(1)
    run = tmp_path / "run"
    _train("fractal_tiny.yaml", [f"data.root={prepared_jsb}", f"logging.output_dir={run}", "training.max_steps=40",
                                 "data.crop_length=32", "training.limit_val_batches=0",
                                 "logging.log_images_every_n_steps=0", "logging.progress_bar=false"])
    model, _ = load_generator(run)
    canvas = torch.zeros(2, 2, 128, 64)
    # at temperature 1 (the preset's 0.8 sharpens a 40-step model's silence into near-empty rolls)
    out = model.sample(canvas, torch.ones_like(canvas, dtype=torch.bool), generator=torch.Generator().manual_seed(0),
                       temperature=1.0)
    active = (out[:, 0] > 0).float().mean().item()
    assert 0.5 * CHORALE_ACTIVE_FRACTION < active < 5 * CHORALE_ACTIVE_FRACTION


def test_an_option_newer_than_the_checkpoint_counts_as_its_default() -> None:
    """A checkpoint saved before ``frame_block`` existed was built without folding (its default, 0)."""
    from fractalmidi.models.registry import preset
    from fractalmidi.options import defaults, plain
    from fractalmidi.train.checkpoint import check_same_model

    now = {"name": "fractal-tiny", **{k: plain(v) for k, v in defaults(preset("fractal-tiny").family.options).items()}}
    saved = {k: v for k, v in now.items() if k != "frame_block"}
    check_same_model(saved, now)
    check_same_model({**saved, "temperature": 0.5}, now)  # a sampling default is not the model
    check_same_model({**saved, "dropout": 0.3}, now)  # nor is a training-only setting: fine-tune with more dropout
    with pytest.raises(UserError, match=r"model.frame_block: checkpoint 0 vs now 10"):
        check_same_model(saved, {**now, "frame_block": 10})


def test_init_from_fine_tunes_a_trained_model_with_new_parts(prepared_jsb: Path, tmp_path: Path) -> None:
    """``training.init_from``: a fresh run starts from another run's weights (here adding piece-edge marks, which
    the source lacks and which then train from their initial values); a different architecture is refused."""
    torch.set_num_threads(1)
    common = [*FRACTAL_SMALL, f"data.root={prepared_jsb}", "training.limit_val_batches=0"]
    _train("fractal_tiny.yaml", [*common, f"logging.output_dir={tmp_path / 'base'}", "training.max_steps=1"])
    base = _weights(tmp_path / "base")
    result = _train("fractal_tiny.yaml", [*common, f"logging.output_dir={tmp_path / 'tuned'}", "training.max_steps=1",
                                          f"training.init_from={tmp_path / 'base'}", "model.edge_crops=0.5",
                                          "training.lr=1e-12", "logging.log_images_every_n_steps=1"])
    assert result.fresh == ["edges"]  # named, so the user learns what did not come from the source
    assert list((tmp_path / "tuned" / GIF_DIR).glob("*.gif"))  # the image logger reads the edge crops' rolls
    tuned = _weights(tmp_path / "tuned")
    assert set(tuned) - set(base) == {"model.edges"}
    for name, value in base.items():  # a step at lr 1e-12 (and weight decay at that rate) keeps them
        assert torch.allclose(value, tuned[name], atol=1e-9), name
    with pytest.raises(UserError, match="training.init_from .* does not match the model: .*shape differs"):
        _train("fractal_tiny.yaml", [*common, f"logging.output_dir={tmp_path / 'wide'}", "training.max_steps=1",
                                     f"training.init_from={tmp_path / 'base'}", "model.widths=[32,32,32]"])
    assert not (tmp_path / "wide").exists()
