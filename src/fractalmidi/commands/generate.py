"""``fractalmidi generate``: compose from a checkpoint (unconditional, continue, inpaint); see
:mod:`fractalmidi.generate`. Every setting and every family's sampling option is a flag, unset
by default, so the config file's value or the checkpoint's default applies."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.generate import (
    DEFAULT_CONFIG,
    SAMPLES_FILE,
    Choices,
    Settings,
    generate,
    resolve_request,
    sampling_fields,
    setting_names,
)
from fractalmidi.options import flag, flag_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="a training checkpoint (.ckpt), run folder or shipped model name")
    source.add_argument("--model", dest="checkpoint", type=Path, help="a shipped model (see 'fractalmidi models')")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: sample_NNN.mid/.png[/.gif/.wav] + samples.json")
    parser.add_argument("--config", type=Path,
                        help=f"inference YAML with defaults (default: {DEFAULT_CONFIG.name} when present); flags win")
    for name in setting_names():
        parser.add_argument(flag(name), **flag_arguments(Settings, name))
    group = parser.add_argument_group("sampling options (the checkpoint's family decides which apply; "
                                      "default: the checkpoint's)")
    for name, (cls, takers) in sampling_fields().items():
        kwargs = flag_arguments(cls, name)
        group.add_argument(flag(name), **{**kwargs, "help": f"{', '.join(takers)}: {kwargs['help']}"})
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")


def run(args: argparse.Namespace) -> int:
    given = vars(args)
    choices = Choices(checkpoint=args.checkpoint, out=args.out, config=args.config,
                      settings={k: given[k] for k in setting_names()},
                      sampling={k: given[k] for k in sampling_fields()}, overwrite=args.overwrite)
    record = generate(resolve_request(choices))
    out = Path(args.out)
    print(f"{len(record['samples'])} sample(s), {record['steps']} steps each ({record['mode']}) in {out}/ "
          f"({record['elapsed_s']:.1f} s); settings in {out / SAMPLES_FILE}")
    return 0
