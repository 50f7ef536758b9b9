"""Compose from a checkpoint (unconditional, continue, inpaint): ``fractalmidi generate``.

Every mode is one canvas plus a mask of the pixels to generate (see :mod:`fractalmidi.canvas`);
known pixels come back bit-identical, so notes outside the region are the input's quantised
notes. Settings come from the user's :class:`Choices` (the command's flags), then ``--config``
(YAML, default ``configs/inference_default.yaml``), then :class:`Settings`' defaults; everything
lands in a staging folder that replaces ``--out`` only when all samples are written.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fractalmidi import __version__
from fractalmidi.data.roll import DEFAULT_MAX_STEPS
from fractalmidi.errors import UserError
from fractalmidi.options import FLAG, check_values, defaults, fields_by_name, flag, names, option
from fractalmidi.outdir import SAMPLES_FILE, check_out_dir, plain_json, staged_dir, write_json

MODES = ("unconditional", "continue", "inpaint")
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "inference_default.yaml"
"""Used when ``--config`` is not given and the file exists (a source checkout)."""
INPUT_STEM = "input"
SAMPLE_STEM = "sample_{index:03d}"

MAX_STEPS = DEFAULT_MAX_STEPS
"""Longest piece generated in one run (the longest piece ``prepare`` accepts by default)."""
MAX_NUM_SAMPLES = 10_000
MAX_BATCH_STEPS = 65_536
"""Batch size x steps generated at once: bounds the canvases and the model's activations."""
MAX_TEMPO_BPM = 1000.0


@dataclass
class Settings:
    """What ``--config`` (YAML) may set and the flags of the same names (flags win over the file,
    the file over these defaults); ``sampling`` maps a family to its sampling options."""

    mode: str = option("unconditional", "unconditional | continue | inpaint (default from config)", choices=MODES)
    length: int = option(256, "unconditional: steps to compose; continue: new steps after the kept prefix")
    num_samples: int = option(1, "how many pieces (variations of the same input in continue/inpaint)")
    input: str | None = option(None, "continue/inpaint: the MIDI file to start from", type=Path)
    condition_length: int = option(64, "continue: steps of the input kept before the new steps")
    start: int | None = option(None, "inpaint: first step of the region to rewrite")
    end: int | None = option(None, "inpaint: end step (exclusive) of the region")
    pitch_low: int | None = option(None, "inpaint: lowest MIDI pitch rewritten (inclusive, default 0)")
    pitch_high: int | None = option(None, "inpaint: highest MIDI pitch rewritten (inclusive, default 127)")
    label: int | None = option(None, "class label for a class-conditional checkpoint; for one trained with "
                                     "data.style_labels, its style 0-8 (a shipped model's card lists them; "
                                     "default: the input's style, else drawn like the training crops'; "
                                     "samples.json names each sample's)")
    seed: int = option(0, "random seed (results depend on seed and --batch-size)")
    batch_size: int = option(4, "samples generated at once")
    tempo_bpm: float = option(120.0, "tempo of the written MIDI (default: the input's, else from config)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps (default auto)")
    gif: bool = option(False, "also write an animated GIF of the generation steps per sample")
    wav: bool = option(False, "also render WAV audio through FluidSynth")
    sampling: dict[str, dict[str, Any]] = option({}, "sampling options per family, e.g. {fractal: {temperature: 0.9}}",
                                                 **{FLAG: False})


BUILTIN_DEFAULTS: dict[str, Any] = defaults(Settings)
"""Fallbacks when neither the config file nor a flag sets a value."""

MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "unconditional": ("length",),
    "continue": ("input", "condition_length", "length"),
    "inpaint": ("input", "start", "end", "pitch_low", "pitch_high"),
}
"""Request fields each mode uses; a flag of another mode is an error, not silently ignored."""
MODE_ONLY_FIELDS = ("input", "condition_length", "start", "end", "pitch_low", "pitch_high", "length")


def sampling_fields() -> dict[str, tuple[type, list[str]]]:
    """Every family's sampling option: name -> (a dataclass declaring it, the families taking it)."""
    from fractalmidi.models.registry import families

    out: dict[str, tuple[type, list[str]]] = {}
    for family in families().values():
        for name in names(family.sampling):
            out.setdefault(name, (family.sampling, []))[1].append(family.name)
    return out


def setting_names() -> list[str]:
    """The :class:`Settings` a run may be given one by one (all but the per-family ``sampling`` mapping)."""
    return [name for name, settings_field in fields_by_name(Settings).items()
            if settings_field.metadata.get(FLAG, True)]


@dataclass
class Request:
    """Fully resolved settings of one ``generate`` run (what ``samples.json`` records)."""

    checkpoint: Path
    out: Path
    config_file: Path | None
    mode: str
    num_samples: int
    batch_size: int
    seed: int
    tempo_bpm: float | None
    device: str
    gif: bool
    wav: bool
    length: int | None = None
    input: Path | None = None
    condition_length: int | None = None
    start: int | None = None
    end: int | None = None
    pitch_low: int | None = None
    pitch_high: int | None = None
    label: int | None = None
    sampling: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Config file options per family: ``{"fractal": {...}, "jit": {...}}``."""
    sampling_flags: dict[str, Any] = field(default_factory=dict)
    """Options given on the command line (checked against the checkpoint's family)."""
    overwrite: bool = False


def load_inference_config(path: Path | None) -> tuple[dict[str, Any], Path | None]:
    """The YAML defaults (``{}`` when no file); unknown keys are a ``UserError``."""
    from fractalmidi.train.config import load_yaml

    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
        if path is None:
            return {}, None
    data = load_yaml(path)
    unknown = sorted(set(data) - set(BUILTIN_DEFAULTS))
    if unknown:
        raise UserError(f"--config {path}: unknown keys {unknown}; accepted: {', '.join(sorted(BUILTIN_DEFAULTS))}")
    sampling = data.get("sampling") or {}
    if not isinstance(sampling, dict) or not all(isinstance(v, dict) or v is None for v in sampling.values()):
        raise UserError(f"--config {path}: 'sampling' must map a family name to its options, e.g. sampling: "
                        f"{{fractal: {{temperature: 1.0}}}}")
    return data, path


@dataclass(frozen=True)
class Choices:
    """What the user asked of one ``generate`` run; a setting or sampling option that is absent or None
    takes the ``config`` file's value, else the default (:func:`resolve_request` merges them)."""

    checkpoint: Path
    """A training checkpoint (.ckpt), run folder or shipped model name."""
    out: Path
    config: Path | None = None
    """Inference YAML with defaults (None: :data:`DEFAULT_CONFIG` when present)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """:class:`Settings` by name (see :func:`setting_names`)."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """Family sampling options by name (see :func:`sampling_fields`), checked against the checkpoint's family."""
    overwrite: bool = False


def resolve_request(choices: Choices) -> Request:
    """Merge the defaults, the YAML config and the user's choices; check what needs no model."""
    config, config_path = load_inference_config(choices.config)
    unknown = (sorted(set(choices.settings) - set(setting_names()))
               + sorted(set(choices.sampling) - set(sampling_fields())))
    if unknown:
        raise UserError(f"unknown generate options {unknown}")
    flags = {k: v for k, v in {**choices.settings, **choices.sampling}.items() if v is not None}

    def pick(key: str) -> Any:
        return flags.get(key, config.get(key, BUILTIN_DEFAULTS.get(key)))

    mode = pick("mode")
    if mode not in MODES:
        raise UserError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    stray = [f"--{k.replace('_', '-')}" for k in MODE_ONLY_FIELDS if k in flags and k not in MODE_FLAGS[mode]]
    if stray:
        raise UserError(f"{', '.join(stray)} not used by --mode {mode}; it takes: "
                        f"{', '.join('--' + k.replace('_', '-') for k in MODE_FLAGS[mode])}")
    request = Request(
        checkpoint=choices.checkpoint,
        out=choices.out,
        config_file=config_path,
        mode=mode,
        num_samples=int(pick("num_samples")),
        batch_size=int(pick("batch_size")),
        seed=int(pick("seed")),
        tempo_bpm=flags.get("tempo_bpm"),
        device=str(pick("device")),
        gif=bool(pick("gif")),
        wav=bool(pick("wav")),
        label=pick("label"),
        sampling={k: dict(v or {}) for k, v in (config.get("sampling") or {}).items()},
        sampling_flags={k: flags[k] for k in sampling_fields() if k in flags},
        overwrite=bool(choices.overwrite),
    )
    if request.tempo_bpm is None and mode == "unconditional":
        request.tempo_bpm = float(pick("tempo_bpm"))
    for key in MODE_FLAGS[mode]:
        setattr(request, key, pick(key))
    _check_request(request)
    return request


def _check_request(req: Request) -> None:
    """Checks that need neither the model nor the input's content; every size is bounded here,
    before anything is allocated."""
    from fractalmidi.pretrained import resolve

    if not 1 <= req.num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"--num-samples must be in 1..{MAX_NUM_SAMPLES}, got {req.num_samples}")
    if not 1 <= req.batch_size <= MAX_BATCH_STEPS:
        raise UserError(f"--batch-size must be in 1..{MAX_BATCH_STEPS}, got {req.batch_size}")
    if req.tempo_bpm is not None and not (math.isfinite(req.tempo_bpm) and 0 < req.tempo_bpm <= MAX_TEMPO_BPM):
        raise UserError(f"--tempo-bpm must be a number of beats per minute in (0, {MAX_TEMPO_BPM:g}], got "
                        f"{req.tempo_bpm}")
    req.checkpoint = resolve(req.checkpoint)
    if req.mode != "unconditional":
        if req.input is None:
            raise UserError(f"--mode {req.mode} needs --input IN.mid")
        if not Path(req.input).is_file():
            raise UserError(f"--input {req.input} not found")
    if req.mode in ("unconditional", "continue") and (req.length is None or req.length < 1):
        raise UserError(f"--length must be a positive number of steps, got {req.length}")
    if req.mode == "continue" and (req.condition_length is None or req.condition_length < 1):
        raise UserError(f"--condition-length must be a positive number of steps, got {req.condition_length}")
    if req.mode == "inpaint" and (req.start is None or req.end is None):
        raise UserError("--mode inpaint needs --start STEP and --end STEP (the region [start, end) to rewrite)")
    steps = (req.length or 0) + (req.condition_length or 0 if req.mode == "continue" else 0)
    if req.mode == "inpaint":
        steps = max(req.end, 0)
    if steps > MAX_STEPS:
        raise UserError(f"{steps} steps asked for; the limit is {MAX_STEPS} steps per piece (generate longer music by "
                        f"continuing a piece in parts)")
    _check_batch(req, steps)
    for key, value in req.sampling_flags.items():  # the bounds a family declares, before any model loads
        check_values(sampling_fields()[key][0], {key: value}, flag)
    if req.wav:
        import shutil

        from fractalmidi.viz import FLUIDSYNTH_HINT, find_soundfont

        if shutil.which("fluidsynth") is None or find_soundfont() is None:
            raise UserError(f"--wav needs the fluidsynth program and a General-MIDI soundfont: {FLUIDSYNTH_HINT}")
    check_out_dir(Path(req.out), req.overwrite, _inputs(req))


def _check_batch(req: Request, steps: int) -> None:
    """Samples generated at once x their steps stay under :data:`MAX_BATCH_STEPS`."""
    if min(req.batch_size, req.num_samples) * steps > MAX_BATCH_STEPS:
        raise UserError(f"--batch-size {req.batch_size} x {steps} steps exceeds the limit of {MAX_BATCH_STEPS} steps "
                        f"generated at once; use --batch-size {max(1, MAX_BATCH_STEPS // max(steps, 1))} or less")


def sampling_options(req: Request, model) -> dict[str, Any]:
    """Options passed to ``model.sample``: config section of the family, then flags.

    An option the family does not take is a ``UserError`` naming the ones it does.
    """
    accepted = dict(model.sample_defaults)
    accepted_flags = ", ".join(flag(k) for k in accepted) or "none"
    from_config = req.sampling.get(model.family, {})
    bad_config = sorted(set(from_config) - set(accepted))
    if bad_config:
        raise UserError(f"config sampling.{model.family}: {bad_config} not taken by the {model.family} family; "
                        f"accepted: {', '.join(accepted)}")
    bad_flags = [flag(k) for k in req.sampling_flags if k not in accepted]
    if bad_flags:
        raise UserError(f"{', '.join(bad_flags)} not used by the {model.family} family of this checkpoint; it takes: "
                        f"{accepted_flags}")
    check_values(type(model.sampling), from_config, lambda k: f"config sampling.{model.family}.{k}")
    return {**from_config, **req.sampling_flags}


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None


def generate(req: Request, *, progress: bool = True) -> dict[str, Any]:
    """Run a resolved request and write ``req.out``; returns the ``samples.json`` record."""
    import torch
    from tqdm import tqdm

    from fractalmidi.canvas import build_plan, result_roll
    from fractalmidi.data.style import describe_style
    from fractalmidi.inference import load_checkpoint, sample_plan, style_labels

    started = time.perf_counter()
    loaded = load_checkpoint(req.checkpoint)
    model = loaded.model
    options = sampling_options(req, model)
    classes = int(getattr(model, "num_classes", 0))
    if req.label is not None and not 0 <= req.label < classes:
        raise UserError(f"--label {req.label}: this model has labels 0-{classes - 1}" if classes > 1 else
                        f"--label {req.label}: this model has no class labels")
    device = _device(req.device)
    model.to(device)

    input_roll, input_meta = None, {}
    if req.input is not None:
        from fractalmidi.data.roll import BadMidiError, midi_to_roll

        try:
            input_roll, input_meta = midi_to_roll(req.input, grid=loaded.grid, max_steps=MAX_STEPS)
        except BadMidiError as err:
            raise UserError(f"--input {req.input}: {err}") from None
    tempo = (req.tempo_bpm if req.tempo_bpm is not None
             else float(input_meta.get("tempo_bpm", BUILTIN_DEFAULTS["tempo_bpm"])))
    plan = build_plan(req, input_roll, model.length_multiple)
    _check_batch(req, int(plan.canvas.shape[-1]))
    try:
        model.check_length(plan.canvas.shape[-1])
    except ValueError as err:
        raise UserError(f"the model cannot take {plan.canvas.shape[-1]} steps: {err}") from None

    record = {
        "fractalmidi_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(Path(req.checkpoint).resolve()),
        "preset": model.preset,
        "family": model.family,
        "config_file": str(req.config_file) if req.config_file else None,
        "settings": plain_json(asdict(req)),
        "mode": req.mode,
        "seed": req.seed,
        "batch_size": req.batch_size,
        "num_samples": req.num_samples,
        "grid": loaded.grid,
        "tempo_bpm": tempo,
        "length_multiple": model.length_multiple,
        "steps": plan.length,
        "padded_steps": int(plan.canvas.shape[-1]),
        "region": plan.region,
        "sample_options": plain_json({**model.sample_defaults, **options}),
        "label": req.label,
        "device": str(device),
    }
    labels = None
    generator = torch.Generator(device=device).manual_seed(req.seed)
    sizes = [min(req.batch_size, req.num_samples - i) for i in range(0, req.num_samples, req.batch_size)]
    with staged_dir(Path(req.out), req.overwrite, command="generate", inputs=_inputs(req)) as stage:
        record["input"] = _write_input(stage, req, input_roll, input_meta, loaded.grid, tempo)
        record["samples"] = []
        for size in tqdm(sizes, desc=f"generate ({req.mode})", unit="batch", disable=not progress):
            if req.label is not None:
                labels = torch.full((size,), int(req.label), dtype=torch.long, device=device)
            else:  # a style-labelled model's labels, drawn here so that samples.json can name them
                labels = style_labels(plan, size, generator, device, loaded.style_counts, loaded.style_edges)
            result, steps = sample_plan(model, plan, size, generator=generator, labels=labels, options=options,
                                        return_steps=req.gif, **loaded.normalisation)
            batch = [result_roll(plan, sample) for sample in result.cpu()]  # notes outside the region kept whole
            for k, roll in enumerate(batch):  # written per batch: memory stays one batch, whatever --num-samples
                frames = [step[k].cpu() for step in steps] + [roll] if req.gif else None
                record["samples"].append(
                    _write_sample(stage, len(record["samples"]), roll, frames, req, loaded.grid, tempo))
                if labels is not None:
                    record["samples"][-1]["label"] = int(labels[k])
                    if loaded.style_edges:
                        record["samples"][-1]["style"] = describe_style(int(labels[k]), loaded.style_edges)
        record["elapsed_s"] = round(time.perf_counter() - started, 3)
        write_json(stage / SAMPLES_FILE, record)
    return record


def _inputs(req: Request) -> list[Path | None]:
    """What ``--out`` must never be, contain or lie inside."""
    from fractalmidi.train.checkpoint import resolve_checkpoint

    # a run folder stands for its checkpoint file (samples may go beside it)
    return [req.input, resolve_checkpoint(req.checkpoint), req.config_file]


def _write_input(stage: Path, req: Request, roll, meta: dict, grid: str, tempo: float) -> dict | None:
    """The input as the model saw it (quantised on the checkpoint's grid): MIDI and PNG."""
    if roll is None:
        return None
    from fractalmidi.data import roll_to_midi
    from fractalmidi.viz import printable, save_png

    roll_to_midi(roll, stage / f"{INPUT_STEM}.mid", grid=grid, tempo_bpm=tempo)
    save_png(roll, stage / f"{INPUT_STEM}.png", title=f"input: {printable(Path(req.input).name)}", grid=grid)
    return {
        "path": str(Path(req.input).resolve()),
        "steps": int(roll.shape[-1]),
        "tempo_bpm": meta.get("tempo_bpm"),
        "mid": f"{INPUT_STEM}.mid",
        "png": f"{INPUT_STEM}.png",
    }


def _write_sample(stage: Path, index: int, roll, frames: list | None, req: Request, grid: str, tempo: float) -> dict:
    from fractalmidi.data import roll_to_midi
    from fractalmidi.viz import render_wav, save_gif, save_png

    stem = SAMPLE_STEM.format(index=index)
    score = roll_to_midi(roll, stage / f"{stem}.mid", grid=grid, tempo_bpm=tempo)
    save_png(roll, stage / f"{stem}.png", title=f"{stem} ({req.mode})", grid=grid)
    entry: dict[str, Any] = {"index": index, "mid": f"{stem}.mid", "png": f"{stem}.png", "notes": int(score.note_num())}
    if frames is not None:
        save_gif(frames, stage / f"{stem}.gif")
        entry["gif"] = f"{stem}.gif"
    if req.wav:
        render_wav(stage / f"{stem}.mid", stage / f"{stem}.wav")
        entry["wav"] = f"{stem}.wav"
    return entry


