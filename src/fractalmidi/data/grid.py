"""Time grids of a piano-roll: beat-relative 16th notes or absolute frames per second."""

from __future__ import annotations

from dataclasses import dataclass

from fractalmidi.errors import UserError

STEPS_PER_QUARTER = 4
"""The ``16th`` grid: four steps per quarter note (a symusic resample to tpq=4)."""

STEPS_PER_BAR = 16
"""Bar length on the 16th grid (4/4); POP909 time signatures are unreliable, so bars are fixed."""

BEAT_GRIDS = {"16th": STEPS_PER_QUARTER, "quarter": 1}
"""Beat-relative grids by name and their steps per quarter note (``quarter``: the JSB benchmark's frames)."""

CROP_ALIGNS = ("step", "beat", "bar")
"""What training crops may start on (:meth:`Grid.align_steps`)."""

DEFAULT_GRID = "16th"
GRID_HELP = ("'16th' (beat-relative, 4 steps per quarter), 'quarter' (one step per quarter) or "
             "'fps:N' (N frames per second, e.g. fps:16)")


@dataclass(frozen=True)
class Grid:
    """A parsed grid: exactly one of ``steps_per_quarter`` (beat grid) or ``fps`` is set."""

    name: str
    steps_per_quarter: int | None = None
    fps: float | None = None

    @property
    def beat_relative(self) -> bool:
        return self.steps_per_quarter is not None

    @property
    def ruler_steps(self) -> int:
        """Steps between the main lines of a time axis: a 4/4 bar on a beat grid, a second on an fps grid."""
        if self.steps_per_quarter is not None:
            return STEPS_PER_BAR * self.steps_per_quarter // STEPS_PER_QUARTER
        return max(1, round(self.fps))

    def align_steps(self, unit: str) -> int:
        """Steps in one ``unit`` of :data:`CROP_ALIGNS`: a beat is a quarter and a bar a 4/4 bar on a beat grid;
        on an fps grid, which has no beats, both are one step."""
        if unit not in CROP_ALIGNS:
            raise UserError(f"crop alignment {unit!r} is not one of {', '.join(CROP_ALIGNS)}")
        if unit == "step" or self.steps_per_quarter is None:
            return 1
        return self.steps_per_quarter if unit == "beat" else self.ruler_steps

    def seconds_per_step(self, tempo_bpm: float) -> float:
        if self.fps is not None:
            return 1.0 / self.fps
        return 60.0 / tempo_bpm / self.steps_per_quarter


def parse_grid(spec: str | Grid) -> Grid:
    """``"16th"``, ``"quarter"`` or ``"fps:N"`` -> :class:`Grid`; anything else is a :class:`UserError`."""
    if isinstance(spec, Grid):
        return spec
    text = str(spec).strip().lower()
    if text in BEAT_GRIDS:
        return Grid(text, steps_per_quarter=BEAT_GRIDS[text])
    if text.startswith("fps:"):
        try:
            fps = float(text[4:])
        except ValueError:
            fps = 0.0
        if fps > 0:
            return Grid(f"fps:{text[4:]}", fps=fps)
    raise UserError(f"unknown grid {spec!r}: use {GRID_HELP}")
