"""Training configs: YAML + dotted overrides, schema checks, the closest-key error, the run folder rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fractalmidi.cli import main
from fractalmidi.errors import UserError
from fractalmidi.train.config import dump_yaml, load_config, parse_override
from fractalmidi.train.runner import plan
from fractalmidi.train.schedule import WarmupCosine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = ("fractal_128x512", "fractal_128x256", "fractal_128x128", "jit_128x128",
                 "jit_128x256", "fractal_tiny", "fractal_small", "jit_tiny", "fractal_jsb")


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_shipped_configs_resolve_and_round_trip(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    again = load_config(None, base=yaml.safe_load(dump_yaml(cfg)))
    assert again.to_dict() == cfg.to_dict()
    assert cfg.model_name in cfg.to_dict()["model"]["name"]


def test_overrides_are_yaml_values() -> None:
    cfg = load_config(CONFIGS / "jit_tiny.yaml", [
        "training.lr=3e-4", "training.max_steps=17", "hardware.precision=bf16-mixed",
        "data.pitch_shift=[-1, 2]", "training.decay_steps=null", "logging.progress_bar=false",
        "model.depth=3", "hardware.devices=2",
    ])
    assert cfg.training.lr == pytest.approx(3e-4) and isinstance(cfg.training.lr, float)
    assert cfg.training.max_steps == 17
    assert cfg.hardware.precision == "bf16-mixed"
    assert cfg.data.pitch_shift == [-1, 2]
    assert cfg.training.decay_steps is None
    assert cfg.logging.progress_bar is False
    assert cfg.model["depth"] == 3 and cfg.model_overrides["depth"] == 3
    assert cfg.hardware.devices == 2
    # the resolved model section pins the preset's settings
    assert cfg.to_dict()["model"]["dim"] == 64
    assert parse_override("a.b= [1, 2]") == ("a.b", [1, 2])


@pytest.mark.parametrize(("override", "closest"), [
    ("training.max_step=5", "training.max_steps"),
    ("training.learning_rate=1e-4", "training.lr"),
    ("logging.checkpoint_every_n_step=5", "logging.checkpoint_every_n_steps"),
    ("hardware.device=2", "hardware.devices"),
    ("model.dept=3", "model.depth"),
    ("trainng.lr=1", "training.lr"),
])
def test_bad_key_names_the_closest_valid_key(override: str, closest: str) -> None:
    with pytest.raises(UserError, match=rf"unknown config key .*did you mean '{closest}'"):
        load_config(CONFIGS / "jit_tiny.yaml", [override])


@pytest.mark.parametrize(("override", "message"), [
    ("training.lr=fast", "training.lr: expected a number"),
    ("training.max_steps=2.5", "training.max_steps: expected an integer"),
    ("training.max_steps=0", "training.max_steps must be a positive integer"),
    ("hardware.precision=64", "hardware.precision must be one of 32, 16-mixed, bf16-mixed"),
    ("hardware.strategy=dpp", "did you mean 'ddp'"),
    ("model.name=jit-tinny", "did you mean 'jit-tiny'"),
    ("training.grad_checkpointing=maybe", "training.grad_checkpointing: expected true or false"),
    ("training.max_minutes=0", "training.max_minutes must be a positive number of minutes"),
    ("training.lr", "not of the form section.key=value"),
])
def test_bad_values_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        load_config(CONFIGS / "jit_tiny.yaml", [override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.rhythm_steer=0.5"], r"model.rhythm_steer needs data.style_labels=true"),
    (["model.chroma_steer=[1,1]"], r"model.chroma_steer needs data.style_labels=true"),
    (["data.style_labels=true", "data.key_normalize=false", "model.chroma_steer=[1,0]"],
     r"model.chroma_steer needs a key-normalised model \(data.key_normalize=true\)"),
])
def test_steers_without_what_they_act_through_are_refused_at_training(overrides: list[str], message: str) -> None:
    """A checkpoint storing a steer its model cannot follow would fail only when someone samples it."""
    with pytest.raises(UserError, match=message):
        load_config(CONFIGS / "fractal_tiny.yaml", overrides)
    cfg = load_config(CONFIGS / "fractal_tiny.yaml", ["data.style_labels=true", "model.chroma_steer=[1,0.5]",
                                                      "model.rhythm_steer=0.5"])
    assert cfg.model["chroma_steer"] == [1.0, 0.5] and cfg.model["rhythm_steer"] == 0.5


def test_cli_bad_key_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(CONFIGS / "fractal_tiny.yaml"), "training.batchsize=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "did you mean 'training.batch_size'" in err


def test_print_config_shows_resolved_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["train", str(CONFIGS / "jit_tiny.yaml"), "training.max_steps=9", "--print-config",
                 f"logging.output_dir={tmp_path / 'run'}"])
    tree = yaml.safe_load(capsys.readouterr().out)
    assert code == 0
    assert tree["training"]["max_steps"] == 9 and tree["model"]["name"] == "jit-tiny"
    assert set(tree) == {"model", "data", "training", "hardware", "logging"}


def test_existing_run_folder_is_refused_without_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_00000010.ckpt").write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    args = [f"logging.output_dir={run}"]
    with pytest.raises(UserError, match="exists and is not empty.*--resume.*--overwrite"):
        plan(str(CONFIGS / "jit_tiny.yaml"), args)
    job = plan(str(CONFIGS / "jit_tiny.yaml"), args, overwrite=True)
    assert job.run_dir == run
    assert not (run / "checkpoints").exists()  # the old run's entries are gone ...
    assert (run / "notes.txt").read_text() == "mine"  # ... anything else is left alone


def test_warmup_cosine_schedule_values() -> None:
    schedule = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(110) == pytest.approx(0.1)
    assert schedule(500) == pytest.approx(0.1)  # past the schedule: the floor


def test_model_keys_are_the_family_options() -> None:
    from fractalmidi.models import build
    from fractalmidi.models.registry import preset
    from fractalmidi.train.config import valid_keys

    family = preset("fractal-tiny").family
    assert type(build("fractal-tiny")) is family.model
    model_keys = {k for k in valid_keys("fractal-tiny") if k.startswith("model.") and k != "model.name"}
    assert model_keys == {f"model.{name}" for name in family.option_names()}
    with pytest.raises(KeyError, match="did you mean 'jit-tiny'"):
        preset("jit-tin")
