"""The presets, or one preset's parameters and options (``fractalmidi info``)."""

from __future__ import annotations

import json

from fractalmidi.errors import UserError
from fractalmidi.options import flag, help_of, names, plain


def preset_list() -> list[str]:
    """One line per preset: model presets, then the config presets of ``configs/`` (one namespace)."""
    from fractalmidi.models.registry import available, preset
    from fractalmidi.train.config import CONFIGS_DIR, PRESET_KEY, config_presets, load_yaml

    models = available()
    configs = config_presets()
    width = max(len(n) for n in models + configs)
    lines = ["model presets (fractalmidi train NAME, or preset: NAME in a config):"]
    lines += [f"  {name:<{width}}  {preset(name).family.name}: {preset(name).help}" for name in models]
    if configs:
        lines.append(f"config presets ({CONFIGS_DIR}/NAME.yaml):")
        lines += [f"  {name:<{width}}  preset {load_yaml(CONFIGS_DIR / f'{name}.yaml')[PRESET_KEY]} + its changes"
                  for name in configs]
    return lines


def describe(name: str) -> list[str]:
    """Parameter counts per part, then every model and sampling option with its value in preset ``name``."""
    from fractalmidi.models import build
    from fractalmidi.models.registry import preset, preset_defaults

    try:
        spec = preset(name)
        model = build(name)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    rows = model.parameter_table()
    total = sum(p.numel() for p in model.parameters())
    values = plain(preset_defaults(name))
    family = spec.family
    option_rows = [(f"model.{k}", k, family.options) for k in names(family.options)]
    option_rows += [(f"model.{k} / {flag(k)}", k, family.sampling) for k in names(family.sampling)]
    width = max([len(part) for part, _ in rows] + [len(key) for key, _, _ in option_rows])
    shown = {k: json.dumps(v) for k, v in values.items()}
    value_width = max(len(v) for v in shown.values())
    lines = [f"{name} ({family.name}): {spec.help}", "parameters:"]
    lines += [f"  {part:<{width}}  {count:>13,}" for part, count in rows]
    lines.append(f"  {'total':<{width}}  {total:>13,}")
    lines.append("model options (a training config's model.KEY):")
    lines += [f"  {key:<{width}}  {shown[k]:<{value_width}}  {help_of(cls, k)}" for key, k, cls in option_rows
              if cls is family.options]
    lines.append("sampling options (generate flags; a training config's model.KEY sets the default):")
    lines += [f"  {key:<{width}}  {shown[k]:<{value_width}}  {help_of(cls, k)}" for key, k, cls in option_rows
              if cls is family.sampling]
    return lines

