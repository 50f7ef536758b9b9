"""One studio session: the versions of the roll, the model, and every file in one temporary folder.

Nothing from a request becomes a path: versions are kept in a dict under ids this module
makes, and each file in the session folder is named from such an id and a fixed kind.
Every size is checked before anything is allocated.
"""

from __future__ import annotations

import base64
import io
import math
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fractalmidi.data.roll import NUM_PITCHES
from fractalmidi.data.style import STEER_OPTIONS
from fractalmidi.errors import UserError

MAX_PITCH = NUM_PITCHES - 1
DEFAULT_SEED = 0
MAX_SEED = 2**31 - 1
NO_MODEL = ("no model is loaded, so nothing can be generated: start the studio with "
            "--checkpoint RUN_FOLDER_OR_CKPT")
EXCLUDED_OPTIONS = ("cfg", "cfg_interval")
"""Guidance options need class labels, which the page does not choose: not offered."""
MAX_OPTION_TEXT = 32
MAX_OPTION_LIST = 8
MAX_NAME_CHARS = 60
FILE_KINDS = {"mid": ("mid", "audio/midi"), "wav": ("wav", "audio/wav"), "png": ("png", "image/png"),
              "preview": ("preview.wav", "audio/wav")}
"""Files of a version: file name suffix and media type. ``preview`` is the audio played right
after a generation: the region and one bar after it (rendered at once, in the background)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what a request may ask for (checked before allocating)."""

    max_upload_bytes: int = 2 * 1024 * 1024
    """A MIDI file bigger than this is refused unread."""
    max_piece_steps: int = 4096
    """Longest roll (256 bars of 16ths); longer uploads and regions past it are refused."""
    max_window_steps: int = 512
    """The most steps the model sees at once: a region must fit, the rest of it is context."""
    max_rects: int = 16384
    """Rectangles in one region (a brush stroke arrives as one per pitch row and run)."""
    max_frames: int = 24
    """Coarse-to-fine frames returned per generation (evenly thinned)."""
    max_versions: int = 100
    """The oldest versions are forgotten beyond this."""


class NotFound(UserError):
    """An id that is not one of this session's (HTTP 404)."""


class TooLarge(UserError):
    """A request over a size limit (HTTP 413)."""


class Busy(UserError):
    """A generation is already running (HTTP 409)."""


@dataclass
class Version:
    """One state of the roll in the history."""

    id: str
    roll: np.ndarray
    """``(1, 128, T)`` uint8, the data layer's roll."""
    tempo_bpm: float
    label: str
    parent: str | None = None
    mode: str | None = None
    region: dict[str, int] | None = None
    elapsed_s: float | None = None
    created: float = field(default_factory=time.time)

    @property
    def steps(self) -> int:
        return int(self.roll.shape[-1])


def clean_name(name: str) -> str:
    """A file name shown in labels only: letters, digits and ``._- ``, at most a few words."""
    base = re.split(r"[\\/]", name or "")[-1]
    return re.sub(r"[^A-Za-z0-9._ -]", "_", base)[:MAX_NAME_CHARS] or "upload.mid"


def region_mask(rects: list[Any], steps: int, limits: Limits) -> np.ndarray:
    """Union of ``[start, end, pitch_low, pitch_high]`` rectangles -> ``(128, L)`` bool, ``L >= steps``.

    ``end`` is exclusive, the pitches inclusive; rectangles may reach past the roll's end
    (a continuation) up to ``limits.max_piece_steps``.
    """
    if not isinstance(rects, list) or not rects:
        raise UserError("the region to generate is empty: select some steps or pitches first")
    if len(rects) > limits.max_rects:
        raise TooLarge(f"the region has {len(rects)} rectangles; at most {limits.max_rects} are accepted")
    checked = []
    for rect in rects:
        if (not isinstance(rect, list) or len(rect) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in rect)):
            raise UserError("each region rectangle must be four whole numbers [start, end, pitch_low, pitch_high]")
        start, end, low, high = rect
        if not 0 <= start < end <= limits.max_piece_steps:
            raise UserError(f"region steps {start}..{end} are not inside 0..{limits.max_piece_steps} with start < end")
        if not 0 <= low <= high <= MAX_PITCH:
            raise UserError(f"region pitches {low}..{high} are not inside 0..{MAX_PITCH} with low <= high")
        checked.append((start, end, low, high))
    length = max(steps, max(end for _, end, _, _ in checked))
    mask = np.zeros((NUM_PITCHES, length), dtype=bool)
    for start, end, low, high in checked:
        mask[low : high + 1, start:end] = True
    return mask


def model_window(region: np.ndarray, max_steps: int) -> tuple[int, int]:
    """Steps ``[w0, w1)`` the model sees: all of them when they fit, else the region centred in
    as much context as fits. A region wider than ``max_steps`` is a ``UserError``."""
    length = region.shape[1]
    columns = np.flatnonzero(region.any(axis=0))
    first, stop = int(columns[0]), int(columns[-1]) + 1
    if stop - first > max_steps:
        raise UserError(f"the region spans {stop - first} steps but the model takes at most {max_steps} at once: "
                        "select a shorter region")
    if length <= max_steps:
        return 0, length
    start = max(0, first - (max_steps - (stop - first)) // 2)
    end = min(length, start + max_steps)
    return max(0, end - max_steps), end


def option_kind(default: Any) -> str:
    """How the page edits (and the server reads) an option with this default: boolean | integer | number | list |
    text (JSON writes 1.0 as 1, so the page cannot tell a float default from an integer one itself)."""
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, int):
        return "integer"
    return "number" if isinstance(default, float) else "text"


def coerce_option(name: str, value: Any, default: Any) -> Any:
    """A sampling option from JSON, typed like the family's default (``UserError`` otherwise)."""
    def number(v: Any, kind: type) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UserError(f"sampling option {name} must be a number, got {v!r}")
        if kind is int and v != int(v):
            raise UserError(f"sampling option {name} must be a whole number, got {v!r}")
        return kind(v)

    kind = option_kind(default)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise UserError(f"sampling option {name} must be true or false, got {value!r}")
        return value
    if kind in ("integer", "number"):
        return number(value, type(default))
    if kind == "text":
        if not isinstance(value, str) or len(value) > MAX_OPTION_TEXT:
            raise UserError(f"sampling option {name} must be a short text, got {value!r}"[:120])
        return value
    if default:
        if not isinstance(value, list) or not 0 < len(value) <= MAX_OPTION_LIST:
            raise UserError(f"sampling option {name} must be a list of up to {MAX_OPTION_LIST} numbers like "
                            f"{list(default)}")
        return [number(v, type(default[0])) for v in value]
    raise UserError(f"sampling option {name} cannot be set from the page")


def frame_png(roll: Any) -> str:
    """A ``data:`` URL of a roll's cells as a PNG (one pixel per cell, pitch 127 on top)."""
    from PIL import Image

    from fractalmidi.viz import roll_to_rgb

    buffer = io.BytesIO()
    Image.fromarray(roll_to_rgb(roll), mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thin(items: list, count: int) -> list:
    """At most ``count`` items, evenly spaced, keeping the last."""
    if len(items) <= count:
        return items
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


class Session:
    """State of one running studio; call :meth:`close` to remove its folder."""

    def __init__(self, loaded: Any | None = None, *, limits: Limits | None = None) -> None:
        from fractalmidi.inference import DEFAULT_GRID
        from fractalmidi.viz import find_soundfont

        self.loaded = loaded
        self.limits = limits or Limits()
        self.grid = loaded.grid if loaded is not None else DEFAULT_GRID
        self.folder = Path(tempfile.mkdtemp(prefix="fractalmidi-studio-"))
        self.wav_available = shutil.which("fluidsynth") is not None and find_soundfont() is not None
        self._versions: dict[str, Version] = {}
        self._next_id = 1
        self._state_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._renders: list[threading.Thread] = []

    # ----- state --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove the session folder and everything in it (after any render in progress)."""
        for render in self._renders:
            render.join()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _add(self, roll: np.ndarray, tempo_bpm: float, label: str, **extra: Any) -> Version:
        with self._state_lock:
            version = Version(id=str(self._next_id), roll=roll, tempo_bpm=float(tempo_bpm), label=label, **extra)
            self._next_id += 1
            self._versions[version.id] = version
            while len(self._versions) > self.limits.max_versions:
                oldest = next(iter(self._versions))
                del self._versions[oldest]
                self._remove_files(oldest)
            return version

    def _remove_files(self, version_id: str) -> None:
        for suffix, _ in FILE_KINDS.values():
            (self.folder / f"version-{version_id}.{suffix}").unlink(missing_ok=True)
        (self.folder / f"version-{version_id}.preview.mid").unlink(missing_ok=True)

    def version(self, version_id: str) -> Version:
        """The version with this id (``NotFound`` for anything else)."""
        with self._state_lock:
            found = self._versions.get(version_id) if isinstance(version_id, str) else None
        if found is None:
            raise NotFound(f"there is no version {str(version_id)[:20]!r} in this session")
        return found

    def versions(self) -> list[Version]:
        with self._state_lock:
            return list(self._versions.values())

    def seconds_per_step(self, tempo_bpm: float) -> float:
        from fractalmidi.data.grid import parse_grid

        return parse_grid(self.grid).seconds_per_step(tempo_bpm)

    def steps_per_bar(self) -> int:
        """Bar lines of the page (one a second on an fps grid)."""
        from fractalmidi.data.grid import parse_grid

        return parse_grid(self.grid).ruler_steps

    def sampling_defaults(self) -> dict[str, Any]:
        """The family's options the page offers, with the checkpoint's defaults."""
        if self.loaded is None:
            return {}
        hidden = EXCLUDED_OPTIONS + (() if self.loaded.style_counts else STEER_OPTIONS)
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.loaded.model.sample_defaults.items() if k not in hidden}

    def info(self) -> dict[str, Any]:
        from fractalmidi.data.roll import DEFAULT_TEMPO_BPM
        from fractalmidi.viz import VELOCITY_COLOURS

        model = None
        if self.loaded is not None:
            m, options = self.loaded.model, self.sampling_defaults()
            model = {"family": m.family, "preset": m.preset, "checkpoint": Path(self.loaded.path).name,
                     "length_multiple": m.length_multiple, "options": options,
                     "option_kinds": {k: option_kind(v) for k, v in options.items()}}
        return {
            "model": model,
            "grid": self.grid,
            "steps_per_bar": self.steps_per_bar(),
            "default_tempo_bpm": DEFAULT_TEMPO_BPM,
            "wav": self.wav_available,
            "velocity_colours": [[v, list(c)] for v, c in VELOCITY_COLOURS],
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes, "max_piece_steps": self.limits.max_piece_steps,
                       "max_window_steps": self.limits.max_window_steps, "max_rects": self.limits.max_rects},
            "versions": [self.summary(v) for v in self.versions()],
        }

    def summary(self, version: Version) -> dict[str, Any]:
        preview = self.preview_span(version)
        return {"id": version.id, "parent": version.parent, "label": version.label, "steps": version.steps,
                "tempo_bpm": version.tempo_bpm, "seconds_per_step": self.seconds_per_step(version.tempo_bpm),
                "mode": version.mode, "region": version.region, "elapsed_s": version.elapsed_s,
                "preview": None if preview is None else {"start": preview[0], "end": preview[1]}}

    def preview_span(self, version: Version) -> tuple[int, int] | None:
        """Steps of the preview audio: the generated region and one bar after it (``None``: no
        FluidSynth, or not a generated version)."""
        if not self.wav_available or version.region is None:
            return None
        return version.region["start"], min(version.steps, version.region["end"] + self.steps_per_bar())

    def notes(self, version: Version) -> list[list[int]]:
        """``[pitch, onset, end, velocity]`` per note, in steps."""
        from fractalmidi.data.roll import roll_to_notes

        n = roll_to_notes(version.roll)
        return np.stack([n.pitch, n.onset, n.end, n.velocity], axis=1).tolist() if len(n) else []

    # ----- opening a file -------------------------------------------------------------------

    def open_midi(self, data: bytes, name: str) -> Version:
        """A new version from an uploaded MIDI file (quantised on the model's grid)."""
        from fractalmidi.data.roll import midi_to_roll

        if len(data) > self.limits.max_upload_bytes:
            raise TooLarge(f"the file has {len(data)} bytes; at most {self.limits.max_upload_bytes} are accepted")
        upload = self.folder / f"upload-{threading.get_ident()}.mid"
        try:
            upload.write_bytes(data)
            roll, meta = midi_to_roll(upload, grid=self.grid, max_steps=self.limits.max_piece_steps)
        except UserError as err:
            raise UserError(f"{clean_name(name)} cannot be opened: {str(err).split(' (raise --')[0]}") from None
        finally:
            upload.unlink(missing_ok=True)
        return self._add(roll, meta["tempo_bpm"], f"opened {clean_name(name)}")

    # ----- generating -----------------------------------------------------------------------

    def check_options(self, given: Any) -> dict[str, Any]:
        """Options for ``model.sample`` from the page's JSON (only the offered ones, typed)."""
        if given is None:
            return {}
        if not isinstance(given, dict):
            raise UserError("sampling options must be an object of name: value")
        accepted = self.sampling_defaults()
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise UserError(f"sampling option {unknown[0]!r} is not offered for this model; it takes: "
                            f"{', '.join(accepted) or 'none'}")
        return {k: coerce_option(k, v, accepted[k]) for k, v in given.items()}

    def generate(self, base_id: str | None, rects: Any, options: Any = None,
                 seed: Any = DEFAULT_SEED) -> dict[str, Any]:
        """Regenerate the region of version ``base_id`` (``None``: the empty roll) as a new version.

        Returns ``{"version", "notes", "frames": {"start", "images"}, "mode"}``: the frames
        are the model's coarse-to-fine canvases over the steps it saw, as PNG data URLs.
        """
        import torch

        from fractalmidi.canvas import region_plan, result_roll, separate_at_region_edges
        from fractalmidi.data.roll import DEFAULT_TEMPO_BPM
        from fractalmidi.inference import sample_plan, style_labels

        if self.loaded is None:
            raise UserError(NO_MODEL)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserError(f"the seed must be a whole number in 0..{MAX_SEED}")
        base = self.version(base_id) if base_id is not None else None
        roll = base.roll if base is not None else np.zeros((1, NUM_PITCHES, 0), dtype=np.uint8)
        steps = roll.shape[-1]
        region = region_mask(rects, steps, self.limits)
        mode = "unconditional" if steps == 0 else "continue" if not region[:, :steps].any() else "inpaint"
        start, end = model_window(region, self.limits.max_window_steps)
        options = self.check_options(options)
        model = self.loaded.model
        if not self._model_lock.acquire(blocking=False):
            raise Busy("a generation is already running: wait for it to finish")
        try:
            began = time.perf_counter()
            plan = region_plan(roll[..., start:min(end, steps)], region[:, start:end], model.length_multiple)
            device = next(model.parameters()).device
            generator = torch.Generator(device=device).manual_seed(seed)
            labels = style_labels(plan, 1, generator, device, self.loaded.style_counts, self.loaded.style_edges)
            result, frames = sample_plan(model, plan, 1, generator=generator, labels=labels, options=options,
                                         return_steps=True, **self.loaded.normalisation)
            window = result_roll(plan, result[0].cpu())
            elapsed = time.perf_counter() - began
        finally:
            self._model_lock.release()
        out = np.zeros((NUM_PITCHES, region.shape[1]), dtype=np.uint8)
        out[:, :steps] = roll[0]
        out[:, start:end] = np.where(region[:, start:end], window[0], out[:, start:end])
        out = separate_at_region_edges(out, region)[None]  # notes across the window's edges stay whole
        info = {k: v + start if k in ("start", "end") else v for k, v in plan.region.items()}
        tempo = base.tempo_bpm if base is not None else DEFAULT_TEMPO_BPM
        style = "" if labels is None else f", style {int(labels[0])}"  # a style-labelled model's (its card)
        version = self._add(out, tempo, f"{self._label(mode, info)} (seed {seed}{style})",
                            parent=base.id if base is not None else None, mode=mode, region=info,
                            elapsed_s=round(elapsed, 3))
        if self.preview_span(version) is not None:  # the audio the page asks for next, rendered meanwhile
            render = threading.Thread(target=self._render_quietly, args=(version.id, "preview"), daemon=True)
            self._renders = [r for r in self._renders if r.is_alive()] + [render]
            render.start()
        images = [frame_png(f[0].cpu()) for f in thin(frames, self.limits.max_frames)]
        return {"version": self.summary(version), "notes": self.notes(version), "mode": mode,
                "frames": {"start": start, "images": images}}

    def _label(self, mode: str, region: dict[str, int]) -> str:
        from fractalmidi.viz import note_name

        bar, start, end = self.steps_per_bar(), region["start"], region["end"]
        if start % bar or end % bar:
            span = f"steps {start}-{end}"
        else:
            span = f"bar {end // bar}" if end - start == bar else f"bars {start // bar + 1}-{end // bar}"
        pitches = "" if (region["pitch_low"], region["pitch_high"]) == (0, MAX_PITCH) else \
            f", {note_name(region['pitch_low'])}-{note_name(region['pitch_high'])}"
        return f"{mode} {span}{pitches}"

    # ----- files ------------------------------------------------------------------------------

    def _render_quietly(self, version_id: str, kind: str) -> None:
        """Write a file ahead of its request; a failure shows when the page asks for it."""
        try:
            self.file(version_id, kind)
        except (UserError, OSError):
            pass

    def file(self, version_id: str, kind: str) -> Path:
        """The version as MIDI, WAV, PNG or preview WAV, written into the session folder on first use."""
        from fractalmidi.data.roll import roll_to_midi
        from fractalmidi.viz import FLUIDSYNTH_HINT, render_wav, save_png

        if kind not in FILE_KINDS:
            raise NotFound(f"a version can be downloaded as mid, wav, png, not {str(kind)[:10]!r}")
        version = self.version(version_id)
        stem = self.folder / f"version-{version.id}"
        path = stem.with_name(f"{stem.name}.{FILE_KINDS[kind][0]}")
        with self._file_lock:
            if path.is_file():
                return path
            if kind == "png":
                save_png(version.roll, path, title=f"version {version.id}: {version.label}", grid=self.grid)
                return path
            if kind in ("wav", "preview") and not self.wav_available:
                raise NotFound(f"WAV needs FluidSynth, which is not installed: {FLUIDSYNTH_HINT}")
            span = (0, version.steps) if kind != "preview" else self.preview_span(version)
            if span is None:
                raise NotFound("only a generated version has a preview")
            roll = version.roll[..., span[0] : span[1]]
            if not roll.any():
                raise UserError("this version has no notes there to write")
            midi = stem.with_name(f"{stem.name}.preview.mid" if kind == "preview" else f"{stem.name}.mid")
            if not midi.is_file():
                roll_to_midi(roll, midi, grid=self.grid, tempo_bpm=version.tempo_bpm)
            if kind != "mid":
                render_wav(midi, path)
        return path
