"""One declaration per option: the family dataclasses drive presets, training configs, generate's
flags and ``fractalmidi info``; config files are a preset plus their differences."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

import pytest
import torch

from fractalmidi.cli import main
from fractalmidi.commands.generate import add_arguments
from fractalmidi.errors import UserError
from fractalmidi.generate import Settings, sampling_fields
from fractalmidi.models import build
from fractalmidi.models.registry import available, families, preset, preset_defaults
from fractalmidi.options import BOUND, HELP, fields_by_name, flag, names, plain
from fractalmidi.train import config as train_config
from fractalmidi.train.config import (
    SECTION_TYPES,
    config_presets,
    load_config,
    load_yaml,
    preset_tree,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILIES = families()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_both_families_are_registered_with_presets() -> None:
    assert set(FAMILIES) == {"fractal", "jit"}
    assert {preset(name).family.name for name in available()} == {"fractal", "jit"}


@pytest.mark.parametrize("cls", [*(c for f in FAMILIES.values() for c in (f.options, f.sampling)),
                                 *SECTION_TYPES.values(), Settings])
def test_every_option_is_typed_with_a_default_and_one_line_help(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        assert field.name in hints
        assert field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        text = field.metadata.get(HELP, "")
        assert text and "\n" not in text, f"{cls.__name__}.{field.name} needs a one-line help"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_and_sampling_options_never_share_a_name(family: str) -> None:
    spec = FAMILIES[family]
    assert not set(names(spec.options)) & set(names(spec.sampling))


def test_every_sampling_option_is_a_generate_flag_with_its_type() -> None:
    actions = {a.dest: a for a in _parser()._actions}
    for family in FAMILIES.values():
        hints = typing.get_type_hints(family.sampling)
        for name in names(family.sampling):
            action = actions[name]
            assert flag(name) in action.option_strings and action.default is None
            assert family.name in action.help
            other = sampling_fields()[name][0]  # an option shared by families has one type
            assert typing.get_type_hints(other)[name] == hints[name]
    assert set(sampling_fields()) == {n for f in FAMILIES.values() for n in names(f.sampling)}


def test_generate_flags_parse_to_the_option_types() -> None:
    args = _parser().parse_args(["--checkpoint", "x.ckpt", "--out", "o", "--num-iter-list", "4", "1", "1",
                                 "--cfg-interval", "0.2", "0.8", "--start-noise", "0.9", "--steps", "7", "--gif"])
    assert args.num_iter_list == [4, 1, 1] and args.cfg_interval == [0.2, 0.8]
    assert args.start_noise == 0.9 and args.steps == 7 and args.gif is True
    assert args.temperature is None and args.wav is None and args.length is None  # unset: config or model decides


def test_generate_settings_are_the_config_keys_and_flags() -> None:
    actions = {a.dest for a in _parser()._actions}
    flagged = {f.name for f in dataclasses.fields(Settings) if f.metadata.get("flag", True)}
    assert flagged <= actions and flagged == set(names(Settings)) - {"sampling"}


@pytest.mark.parametrize("name", ["fractal-tiny", "jit-tiny"])
def test_info_lists_every_option_with_its_value(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", name]) == 0
    lines = {line.split()[0][len("model."):]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  model.")}
    family = preset(name).family
    assert set(lines) == set(family.option_names())
    for option in names(family.sampling):
        assert f"model.{option} / {flag(option)} " in lines[option]
    for option, value in plain(preset_defaults(name)).items():
        assert f"  {json.dumps(value)}  " in lines[option]


def test_info_lists_both_kinds_of_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in available() + config_presets():
        assert f"  {name} " in out


def test_preset_names_are_one_namespace() -> None:
    assert set(config_presets()) == {p.stem for p in CONFIGS.glob("*.yaml")} - {"inference_default"}
    assert not set(config_presets()) & set(available())


@pytest.mark.parametrize("name", config_presets())
def test_config_files_hold_only_their_differences(name: str) -> None:
    raw = load_yaml(CONFIGS / f"{name}.yaml")
    base = load_config(None, base=preset_tree(str(raw["preset"]))).to_dict()
    for section, values in raw.items():
        if section == "preset":
            continue
        for key, value in values.items():
            assert base[section][key] != value, f"{name}.yaml restates {section}.{key}={value!r}"


def test_a_preset_with_overrides_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("preset: fractal_tiny\nmodel:\n  temperature: 0.5\n  widths: [32, 32, 32]\n"
                    "training:\n  lr: 1.0e-3\n")
    cfg = load_config(path, ["data.crop_length=32"])
    assert cfg.model_name == "fractal-tiny" and cfg.model["temperature"] == 0.5 and cfg.model["widths"] == [32, 32, 32]
    assert cfg.model["num_iter_list"] == [8, 1, 1]  # the preset's own value
    assert cfg.training.lr == 1e-3 and cfg.training.max_steps == 2000  # fractal_tiny's value
    assert cfg.data.crop_length == 32 and cfg.logging.output_dir == "runs/fractal_tiny"
    assert cfg.training.weight_decay == 0.05  # the dataclass default
    chained = load_config(CONFIGS / "jit_128x256.yaml")  # jit_128x256 -> jit_128x128 -> jit-128x128
    assert chained.model_name == "jit-128x128" and chained.data.crop_length == 256
    assert chained.training.batch_size == 16 and chained.training.weight_decay == 0.0
    assert chained.hardware.precision == "bf16-mixed"
    by_name = load_config("fractal-ar", ["data.root=x"])  # a model preset stands for a whole config
    assert by_name.model["generators"] == ["ar", "ar", "ar"] and by_name.training.max_steps == 200_000
    model = build(cfg.model_name, **cfg.model_overrides)
    assert model.sampling.temperature == 0.5 and model.options.widths == (32, 32, 32)
    (tmp_path / "fractal_tiny.yaml").write_text((CONFIGS / "fractal_tiny.yaml").read_text())
    (tmp_path / "switched.yaml").write_text("preset: mine\nmodel:\n  name: jit-tiny\n")
    monkeypatch.setattr(train_config, "CONFIGS_DIR", tmp_path)  # mine.yaml is now a preset
    moved = load_config(tmp_path / "switched.yaml")  # another model drops the preset's model options only
    assert moved.model_name == "jit-tiny" and moved.model["dim"] == 64 and moved.training.lr == 1e-3


@pytest.mark.parametrize(("text", "message"), [
    ("preset: fractal_tiny\ntraining:\n  lrr: 1\n", "unknown config key 'training.lrr'; did you mean 'training.lr'"),
    ("preset: fractal_tiny\nmodel:\n  widht: [1]\n", "did you mean 'model.widths'"),
    ("preset: jit_tiny\nmodel:\n  temperature: 0.5\n", "did you mean 'model.start_noise'"),
    ("preset: fractal_tny\n", "unknown preset 'fractal_tny' (did you mean 'fractal_tiny'?)"),
    ("preset: fractal_tiny\nmodel:\n  widths: 3\n", "model.widths: expected a list of int"),
    ("preset: fractal_tiny\ntraining:\n  learning_rate: 1\n", "did you mean 'training.lr'"),
    ("presett: fractal_tiny\n", "unknown config section 'presett'; did you mean 'preset'"),
])
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "override", "message"), [
    ("fractal_tiny", "model.temperature=-1", "model.temperature must be > 0, got -1.0"),
    ("fractal_tiny", "model.num_iter_list=[8, 0, 1]", "model.num_iter_list must be whole numbers in 1..10000"),
    ("jit_tiny", "model.silence_below=1.5", "model.silence_below must be in [0, 1], got 1.5"),
    ("jit_tiny", "model.cfg_interval=[0.9, 0.1]", "model.cfg_interval must be LOW HIGH with 0 <= LOW <= HIGH <= 1"),
    ("jit_tiny", "model.dim=.nan", "model.dim: expected an integer"),
    ("jit_tiny", "model.P_std=.inf", "model.P_std must be a finite number"),
])
def test_option_bounds_apply_to_training_configs(name: str, override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(name, [override])
    assert message in str(err.value)


def test_a_shared_sampling_option_has_one_bound() -> None:
    for name, (_, takers) in sampling_fields().items():
        bounds = {fields_by_name(FAMILIES[f].sampling)[name].metadata.get(BOUND) for f in takers}
        assert len(bounds) == 1, name


def test_a_preset_cycle_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_text("preset: b\n")
    (tmp_path / "b.yaml").write_text("preset: a\n")
    monkeypatch.setattr(train_config, "CONFIGS_DIR", tmp_path)
    with pytest.raises(UserError, match="preset 'a' includes itself: a -> b -> a"):
        load_config("a")


def test_build_names_the_closest_option() -> None:
    with pytest.raises(TypeError, match="'temprature' is not a fractal option; did you mean 'temperature'"):
        build("fractal-tiny", temprature=0.5)
    with pytest.raises(TypeError, match="not a jit option"):
        build("jit-tiny", temperature=0.5)  # JiT's noise scale is start_noise


def test_sample_defaults_come_from_the_sampling_dataclass() -> None:
    model = build("jit-tiny", start_noise=0.7)
    assert model.sample_defaults == {**dataclasses.asdict(model.sampling), "cfg_interval": [0.1, 1.0]}
    assert model.sample_defaults["start_noise"] == 0.7 and model.sample_defaults["steps"] == 10


def test_a_stored_jit_temperature_loads_as_start_noise(tmp_path: Path) -> None:
    from fractalmidi.train.checkpoint import EXTRA_KEY, MODEL_PREFIX, load_generator
    from fractalmidi.train.config import resolve_model

    model = build("jit-tiny")
    stored = {k: v for k, v in load_config("jit_tiny").to_dict()["model"].items() if k != "start_noise"}
    stored["temperature"] = 0.7  # what checkpoints written before the rename hold
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
                EXTRA_KEY: {"config": {"model": stored, "data": {"grid": "16th"}}}}, path)
    loaded, config = load_generator(path)
    assert loaded.sampling.start_noise == 0.7 and config["model"]["temperature"] == 0.7
    assert resolve_model(stored, stored=True)["start_noise"] == 0.7
    with pytest.raises(UserError, match="did you mean 'model.start_noise'"):
        resolve_model(stored)


def test_jit_network_options_are_the_network_keywords() -> None:
    import inspect

    from fractalmidi.models.jit.network import JiTNet
    from fractalmidi.models.jit.options import JiTNetOptions

    fixed = {"in_channels", "out_channels", "token_channels"}  # set by the objective, not options
    assert set(names(JiTNetOptions)) == set(inspect.signature(JiTNet).parameters) - fixed
