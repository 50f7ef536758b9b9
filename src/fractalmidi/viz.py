"""Piano-roll pictures (PNG, animated GIF) and audio (WAV through FluidSynth); ``fractalmidi render``.

Colours follow Logic Pro's velocity scheme: black = silence, blue for soft notes, green around
velocity 64, yellow, then red at 127, with a legend beside the roll. Each note starts with a
dark line at its onset, so a re-struck note shows as two. Pictures put high pitches at the
top, show the music's pitch range in whole octaves, label the pitch axis with note names
(C4 = MIDI 60) and the time axis in bars (16 steps of the 16th grid; seconds on an ``fps``
grid). matplotlib draws through its Agg canvas (no display needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalmidi.data.grid import DEFAULT_GRID
from fractalmidi.data.roll import MAX_VELOCITY, NUM_PITCHES, ONSET_BIT, ROLL_PLANES, VELOCITY_BITS, as_uint8_roll
from fractalmidi.errors import UserError
from fractalmidi.outdir import atomic_path

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

VELOCITY_COLOURS = (
    (1, (40, 70, 255)),
    (40, (0, 190, 230)),
    (64, (0, 220, 0)),
    (96, (255, 220, 0)),
    (MAX_VELOCITY, (255, 0, 0)),
)
"""(velocity, RGB) anchors, linearly interpolated; velocity 0 is black."""

PITCH_PX = 4
"""Height of one pitch row in a PNG (128 rows -> 512 px)."""
MAX_STEP_PX = 8
MAX_IMAGE_WIDTH = 4096
"""A step gets the largest whole number of pixels (<= MAX_STEP_PX) that keeps the roll this wide."""
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 72, 32, 44
LEGEND_GAP_PX, LEGEND_WIDTH_PX = 12, 12
"""The velocity legend: a colour bar right of the roll."""
MIN_ONSET_MARK_PX = 3
"""Steps at least this wide get a dark onset line in their first pixel column."""
OCTAVE = 12
MIN_PITCH_SPAN = 2 * OCTAVE
"""A picture shows the music's pitches rounded out to whole octaves, at least two of them."""
DPI = 100
BACKGROUND = "#1e1e1e"
FOREGROUND = "#d0d0d0"
BAR_LINE_ALPHA = 0.25
MAX_TIME_TICKS = 24

GIF_FRAME_MS = 120
GIF_HOLD_LAST_MS = 1500
GIF_PITCH_PX = 3
GIF_MAX_WIDTH = 1024
GIF_REVEAL_FRAMES = 32
"""A single roll rendered as GIF is revealed left to right in this many frames."""

SAMPLE_RATE = 44100
SOUNDFONT_ENV = "FRACTALMIDI_SOUNDFONT"
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
"""Where Debian's fluid-soundfont-gm (and other distributions) put the General-MIDI soundfont."""
FLUIDSYNTH_HINT = ("install the Debian packages fluidsynth and fluid-soundfont-gm "
                   "(apt-get install fluidsynth fluid-soundfont-gm)")


def _velocity_lut() -> np.ndarray:
    velocities = np.arange(MAX_VELOCITY + 1)
    anchors = np.array([v for v, _ in VELOCITY_COLOURS], dtype=np.float64)
    colours = np.array([c for _, c in VELOCITY_COLOURS], dtype=np.float64)
    lut = np.stack([np.interp(velocities, anchors, colours[:, ch]) for ch in range(3)], axis=1)
    lut[0] = 0
    return np.rint(lut).astype(np.uint8)


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (60 -> 'C4')."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def roll_to_rgb(roll: Any) -> np.ndarray:
    """``(128, T, 3)`` uint8 picture of a roll: row 0 is pitch 127 (high pitches on top)."""
    return _velocity_lut()[as_uint8_roll(roll)[::-1] & VELOCITY_BITS]


def pitch_window(codes: np.ndarray) -> tuple[int, int]:
    """Lowest and highest pitch to draw: the sounding range rounded out to whole octaves."""
    rows = np.flatnonzero(codes.any(axis=1))
    if rows.size == 0:
        return 0, NUM_PITCHES - 1
    low = int(rows[0]) // OCTAVE * OCTAVE
    high = min(NUM_PITCHES, (int(rows[-1]) // OCTAVE + 1) * OCTAVE)
    while high - low < MIN_PITCH_SPAN:  # widen downwards first, then upwards
        if low > 0:
            low -= OCTAVE
        else:
            high = min(NUM_PITCHES, high + OCTAVE)
    return low, high - 1


@dataclass(frozen=True)
class PngLayout:
    """Where the roll sits in a saved PNG (pixels), so a cell can be found again."""

    left: int
    top: int
    step_px: int
    pitch_px: int
    steps: int
    pitch_low: int = 0
    pitch_high: int = NUM_PITCHES - 1
    """The pitch range drawn (see :func:`pitch_window`)."""

    def pixel(self, pitch: int, step: int) -> tuple[int, int]:
        """``(x, y)`` of the centre of the cell of ``pitch`` at ``step`` (a pitch inside the range drawn)."""
        x = self.left + step * self.step_px + self.step_px // 2
        y = self.top + (self.pitch_high - pitch) * self.pitch_px + self.pitch_px // 2
        return x, y


def _time_ticks(steps: int, grid: str, tempo_bpm: float | None) -> tuple[np.ndarray, list[str], str]:
    from fractalmidi.data.grid import parse_grid

    parsed = parse_grid(grid)
    unit, label = parsed.ruler_steps, "bar" if parsed.beat_relative else "seconds"
    count = steps // unit + 1
    every = max(1, int(np.ceil(count / MAX_TIME_TICKS)))
    ticks = np.arange(0, count, every) * unit
    names = [str(t // unit + (1 if parsed.beat_relative else 0)) for t in ticks]
    return ticks, names, label


def save_png(roll: Any, path: str | os.PathLike, *, title: str | None = None, grid: str = "16th") -> PngLayout:
    """Draw a roll with note-name and bar axes; returns where its cells landed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    codes = as_uint8_roll(roll)
    if codes.shape[1] == 0:  # an empty roll is drawn as one silent step
        codes = np.zeros((NUM_PITCHES, 1), dtype=np.uint8)
    low, high = pitch_window(codes)
    codes = codes[low : high + 1]
    rows, steps = codes.shape
    step_px = max(1, min(MAX_STEP_PX, MAX_IMAGE_WIDTH // steps))
    rgb = _velocity_lut()[codes[::-1] & VELOCITY_BITS].repeat(step_px, axis=1)
    if step_px >= MIN_ONSET_MARK_PX:
        pitch, step = np.nonzero((codes[::-1] & ONSET_BIT) > 0)
        rgb[pitch, step * step_px] = 0
    plot_w, plot_h = steps * step_px, rows * PITCH_PX
    width, height = MARGIN_LEFT + plot_w + MARGIN_RIGHT, MARGIN_TOP + plot_h + MARGIN_BOTTOM
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((MARGIN_LEFT / width, MARGIN_BOTTOM / height, plot_w / width, plot_h / height))
    ax.imshow(rgb, aspect="auto", interpolation="nearest", resample=False, extent=(0, steps, low, high + 1))
    pitches = np.arange(low, high + 1, OCTAVE)
    ax.set_yticks(pitches + 0.5, [note_name(int(p)) for p in pitches])
    ticks, names, label = _time_ticks(steps, grid, None)
    ax.set_xticks(ticks, names)
    for x in ticks[1:]:
        ax.axvline(x, color=FOREGROUND, linewidth=0.5, alpha=BAR_LINE_ALPHA)
    ax.set_xlim(0, steps)
    ax.set_ylim(low, high + 1)
    _legend(fig, (MARGIN_LEFT + plot_w + LEGEND_GAP_PX) / width, MARGIN_BOTTOM / height,
            LEGEND_WIDTH_PX / width, plot_h / height)
    ax.set_xlabel(label, color=FOREGROUND)
    ax.tick_params(colors=FOREGROUND, labelsize=8)
    for spine in ax.spines.values():
        spine.set_color(FOREGROUND)
    if title:
        fig.suptitle(title, color=FOREGROUND, fontsize=10, y=1 - 0.4 * MARGIN_TOP / height)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, facecolor=BACKGROUND, format="png")
    return PngLayout(left=MARGIN_LEFT, top=MARGIN_TOP, step_px=step_px, pitch_px=PITCH_PX, steps=steps,
                     pitch_low=low, pitch_high=high)


def _legend(fig: Any, left: float, bottom: float, width: float, height: float) -> None:
    """A vertical velocity colour bar (1 at the bottom, 127 at the top) in figure coordinates."""
    ax = fig.add_axes((left, bottom, width, height))
    ax.imshow(_velocity_lut()[MAX_VELOCITY:0:-1, None], aspect="auto", interpolation="nearest",
              extent=(0, 1, 1, MAX_VELOCITY + 1))
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.set_yticks([1.5, 64.5, MAX_VELOCITY + 0.5], ["1", "64", str(MAX_VELOCITY)])
    ax.set_ylabel("velocity", color=FOREGROUND, fontsize=8)
    ax.yaxis.set_label_position("right")
    ax.tick_params(colors=FOREGROUND, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(FOREGROUND)


def save_gif(frames: Sequence[Any], path: str | os.PathLike, *, frame_ms: int = GIF_FRAME_MS,
             hold_last_ms: int = GIF_HOLD_LAST_MS) -> None:
    """Animated GIF of rolls (e.g. generation steps, coarse to fine); shorter rolls are padded."""
    from PIL import Image

    if not len(frames):
        raise UserError("save_gif needs at least one frame")
    rolls = [as_uint8_roll(f) for f in frames]
    steps = max(1, max(r.shape[1] for r in rolls))
    step_px = max(1, GIF_MAX_WIDTH // steps)
    images = []
    for roll in rolls:
        padded = np.zeros((NUM_PITCHES, steps), dtype=np.uint8)
        padded[:, : roll.shape[1]] = roll
        rgb = roll_to_rgb(padded).repeat(GIF_PITCH_PX, axis=0).repeat(step_px, axis=1)
        images.append(Image.fromarray(rgb, mode="RGB"))
    durations = [int(frame_ms)] * (len(images) - 1) + [int(frame_ms + hold_last_ms)]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)


def find_soundfont() -> Path | None:
    """``$FRACTALMIDI_SOUNDFONT`` or the first General-MIDI soundfont installed."""
    env = os.environ.get(SOUNDFONT_ENV)
    candidates = ([env] if env else []) + list(SOUNDFONTS)
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


def render_wav(midi_path: str | os.PathLike, wav_path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> None:
    """Synthesize a MIDI file to WAV with the FluidSynth CLI and the General-MIDI soundfont."""
    binary = shutil.which("fluidsynth")
    soundfont = find_soundfont()
    if binary is None or soundfont is None:
        missing = "the fluidsynth program" if binary is None else "a General-MIDI soundfont"
        raise UserError(f"WAV rendering needs {missing}: {FLUIDSYNTH_HINT}")
    with atomic_path(wav_path) as tmp:
        done = subprocess.run(
            [binary, "-ni", "-T", "wav", "-F", str(tmp), "-r", str(sample_rate), str(soundfont), str(midi_path)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0 or tmp.stat().st_size == 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(f"fluidsynth failed on {midi_path}: "
                            f"{detail[-1] if detail else f'exit code {done.returncode}'}")


def reveal_frames(roll: np.ndarray, count: int = GIF_REVEAL_FRAMES) -> list[np.ndarray]:
    """A roll drawn left to right in ``count`` frames (a GIF of a finished piece)."""
    steps = roll.shape[-1]
    frames = []
    for end in np.linspace(0, steps, min(count, steps) + 1)[1:].round().astype(int):
        frame = np.zeros_like(roll)
        frame[:, :end] = roll[:, :end]
        frames.append(frame)
    return frames


# ---------------------------------------------------------------- rendering a file (`fractalmidi render`)


def printable(text: str) -> str:
    """``text`` safe to draw and print: a file name that is not UTF-8 (surrogate escapes from the
    file system) gets U+FFFD for its bad bytes instead of crashing matplotlib."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class RenderRequest:
    """A MIDI file or ``.npy`` roll and the files to draw it into (at least one of png, wav, gif)."""

    input: str | os.PathLike
    png: str | os.PathLike | None = None
    wav: str | os.PathLike | None = None
    gif: str | os.PathLike | None = None
    grid: str = DEFAULT_GRID
    sustain: bool = False
    """Extend notes held by the sustain pedal (MIDI input)."""
    tempo: float | None = None
    """BPM of a ``.npy``'s audio (default :data:`~fractalmidi.data.roll.DEFAULT_TEMPO_BPM`), or to override
    the MIDI's."""
    title: str | None = None
    """Above the picture; default the input's name."""
    overwrite: bool = False

    @property
    def outputs(self) -> list[str | os.PathLike]:
        return [p for p in (self.png, self.wav, self.gif) if p]


def _load_input(path: Path, grid: str, sustain: bool) -> list[np.ndarray]:
    """Frames of ``(128, T)`` uint8 rolls; the last is the piece. A ``.npy`` holds one roll (codes, velocities
    or float planes ``(2, 128, T)``) or frames of them."""
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"{path}: not a readable .npy array ({err})") from None
        planes = array.dtype != np.uint8 and array.ndim >= 3 and array.shape[-3] == ROLL_PLANES
        if array.ndim == 4 and array.shape[1] in (1, ROLL_PLANES):  # frames of rolls or of planes
            return [as_uint8_roll(a) for a in array]
        if array.ndim == 3 and array.shape[0] > 1 and array.shape[1] == NUM_PITCHES and not planes:
            return [as_uint8_roll(a) for a in array]
        try:
            return [as_uint8_roll(array)]
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
    from fractalmidi.data.roll import BadMidiError, midi_to_roll

    try:
        roll, _ = midi_to_roll(path, grid=grid, sustain=sustain)
    except BadMidiError as err:
        raise UserError(f"{path}: {err}") from None
    return [roll[0]]


def render(request: RenderRequest) -> int:
    """Write the requested files; returns the steps of the roll drawn."""
    outputs = request.outputs
    if not outputs:
        raise UserError("nothing to render: give --png OUT.png, --wav OUT.wav and/or --gif OUT.gif")
    from fractalmidi.outdir import check_out_file

    if request.tempo is not None and not (np.isfinite(request.tempo) and request.tempo > 0):
        raise UserError(f"--tempo must be a positive number of beats per minute, got {request.tempo}")
    if len({os.path.realpath(p) for p in outputs}) < len(outputs):
        raise UserError("--png, --wav and --gif must name different files")
    for flag, out in (("--png", request.png), ("--wav", request.wav), ("--gif", request.gif)):
        if out:
            check_out_file(out, request.overwrite, [request.input], flag)
    source = Path(request.input)
    frames = _load_input(source, request.grid, request.sustain)
    roll = frames[-1]
    if request.png:
        save_png(roll, request.png, title=printable(request.title or source.name), grid=request.grid)
    if request.gif:
        save_gif(frames if len(frames) > 1 else reveal_frames(roll), request.gif)
    if request.wav:
        _render_roll_audio(roll, source, Path(request.wav), request.grid, request.tempo)
    return int(roll.shape[-1])


def _render_roll_audio(roll: np.ndarray, source: Path, wav: Path, grid: str, tempo: float | None) -> None:
    """MIDI input plays as is unless ``--tempo`` is given; otherwise the roll becomes a temporary MIDI."""
    from fractalmidi.data.roll import DEFAULT_TEMPO_BPM, roll_to_midi

    if source.suffix.lower() != ".npy" and tempo is None:
        render_wav(source, wav)
        return
    with tempfile.TemporaryDirectory() as folder:
        midi = Path(folder) / "roll.mid"
        roll_to_midi(roll, midi, grid=grid, tempo_bpm=tempo or DEFAULT_TEMPO_BPM)
        render_wav(midi, wav)
