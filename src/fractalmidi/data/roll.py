"""MIDI <-> piano-roll: a ``(1, 128, T)`` uint8 image of note codes on a 16th or fps grid.

A cell's low 7 bits are the velocity sounding there (0 = silence) and its high bit
(:data:`ONSET_BIT`) says a note starts there: every note has one velocity, set at its onset
and repeated by its held frames, and a re-struck note stays two notes. Data without onset
information maps deterministically: a sounding frame after silence is an onset
(:func:`canonical_codes`). Models see the same thing as two float planes, velocity / 127 and
the onset flag (:func:`codes_to_planes`).

MIDI -> roll: notes of every non-drum track are merged (max velocity), a constant per-file
grid offset is detected (circular mean of onset phases) and removed before quantising, on a beat
grid the beat is found (the position within a beat where the most sound starts) and moved onto the
grid's beats with a few steps of lead-in, an optional sustain pedal (CC64) extends notes, and the
length is checked against ``max_steps`` *before* anything is allocated (a 37-byte file can claim a 137 GB roll).

Roll -> MIDI: a note starts at an onset (or a sounding frame after silence) and lasts while its
pitch sounds, up to the next onset. A re-strike while the pitch still sounds ends the previous
note at the re-strike (as on a piano). Two onsets of one pitch in one grid cell cannot both be
kept: quantising merges them and counts them (``collisions`` in the metadata).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from symusic import Note, Score, Tempo, Track

from fractalmidi.data.grid import Grid, parse_grid
from fractalmidi.errors import UserError
from fractalmidi.outdir import atomic_path

NUM_PITCHES = 128
PIANO_LOWEST = 21
"""MIDI A0, the piano's lowest key (the JSB benchmark's keyboard and frame-folded models start here)."""
MAX_VELOCITY = 127
ONSET_BIT = 0x80
"""High bit of a roll cell: a note starts here."""
VELOCITY_BITS = 0x7F
"""Low bits of a roll cell: the velocity sounding there (0 = silence)."""
ROLL_PLANES = 2
VELOCITY_PLANE, ONSET_PLANE = 0, 1
"""Models see rolls as float planes ``(2, 128, T)``: velocity / 127 held over the note, onset flag."""
MIDI_HEADER = b"MThd"

DEFAULT_MAX_STEPS = 16384
"""Longest accepted piece (1024 bars of 16ths, ~17 min at fps:16); ``max_steps=None`` uses it."""

DEFAULT_TEMPO_BPM = 120.0
"""Tempo assumed for files without a tempo event (the MIDI standard's default)."""

OUTPUT_TICKS_PER_QUARTER = 480
"""Resolution of MIDI files written from rolls."""

ON_GRID_TOLERANCE = 0.1
"""An onset is 'on the grid' within this fraction of a step (for the offset statistics)."""


class BadMidiError(UserError):
    """A file that cannot become a piano-roll; the message is the reason (e.g. 'no notes')."""


class PieceTooLongError(BadMidiError):
    """The piece would exceed ``max_steps``; raised before the roll is allocated."""


@dataclass(frozen=True)
class NoteArrays:
    """Notes as parallel arrays in grid steps: ``[onset, end)`` at ``pitch`` with ``velocity``."""

    pitch: np.ndarray
    onset: np.ndarray
    end: np.ndarray
    velocity: np.ndarray
    collisions: int = 0
    """Onsets lost because an earlier onset of the same pitch fell in the same grid cell (an attack
    doubled at the same time on another track is a unison, merged and not counted)."""

    def __len__(self) -> int:
        return int(self.pitch.shape[0])


def load_score(src: str | os.PathLike | Score) -> Score:
    """Read a MIDI file with symusic, turning every failure into a :class:`BadMidiError`."""
    if isinstance(src, Score):
        return src
    path = Path(src)
    if not path.is_file():
        raise BadMidiError(f"no such file: {path}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(MIDI_HEADER))
    except OSError as err:  # no read permission, an I/O error
        raise BadMidiError(f"cannot read the file ({err.strerror or type(err).__name__})") from None
    if not head:
        raise BadMidiError("empty file")
    if head != MIDI_HEADER:
        raise BadMidiError("not a MIDI file (no MThd header)")
    try:
        score = Score(str(path))
    except Exception as err:  # symusic raises RuntimeError/ValueError with parser messages
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadMidiError(f"unreadable MIDI ({detail})") from None
    if score.ticks_per_quarter <= 0:
        raise BadMidiError(f"invalid MIDI header: division {score.ticks_per_quarter} ticks per quarter note")
    return score


def _valid_tempo(qpm: float) -> bool:
    return math.isfinite(qpm) and qpm > 0


def first_tempo_bpm(score: Score) -> float:
    """The first tempo (POP909 changes tempo in 365 files; the roll keeps only the first); a tempo
    event of 0 microseconds per quarter (an infinite tempo) counts as none."""
    valid = [float(t.qpm) for t in score.tempos if _valid_tempo(float(t.qpm))]
    return valid[0] if valid else DEFAULT_TEMPO_BPM


def _raw_notes(score: Score, sustain: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Onset, end (score time units), pitch and velocity of all non-drum notes."""
    onsets, ends, pitches, velocities = [], [], [], []
    for track in score.tracks:
        if track.is_drum or not len(track.notes):
            continue
        arrays = track.notes.numpy()
        onset = arrays["time"].astype(np.float64)
        end = onset + np.maximum(arrays["duration"].astype(np.float64), 0.0)
        if sustain and len(track.pedals):
            end = _extend_by_pedal(end, track.pedals.numpy())
        onsets.append(onset)
        ends.append(end)
        pitches.append(arrays["pitch"].astype(np.int64))
        velocities.append(arrays["velocity"].astype(np.int64))
    if not onsets:
        return (np.zeros(0),) * 2 + (np.zeros(0, np.int64),) * 2
    return np.concatenate(onsets), np.concatenate(ends), np.concatenate(pitches), np.concatenate(velocities)


def _extend_by_pedal(end: np.ndarray, pedals: dict[str, np.ndarray]) -> np.ndarray:
    """A note released while the pedal is down sounds until the pedal is released."""
    start = pedals["time"].astype(np.float64)
    stop = start + pedals["duration"].astype(np.float64)
    order = np.argsort(start)
    start, stop = start[order], stop[order]
    idx = np.searchsorted(start, end, side="right") - 1
    held = idx >= 0
    held[held] = end[held] < stop[idx[held]]
    out = end.copy()
    out[held] = stop[idx[held]]
    return out


def detect_grid_offset(onsets: np.ndarray, period: float) -> float:
    """Constant shift of onsets against a grid of ``period``: the circular mean of their phases.

    Returned in the onsets' units, in ``[-period/2, period/2)``; 0 for no onsets.
    """
    if onsets.size == 0:
        return 0.0
    angle = 2.0 * math.pi * np.mod(onsets, period) / period
    mean_angle = math.atan2(float(np.sin(angle).mean()), float(np.cos(angle).mean()))
    return mean_angle / (2.0 * math.pi) * period


def beat_shift(notes: NoteArrays, steps_per_beat: int, longest: int) -> int:
    """Whole steps to add so the music's beats fall on the grid's: the position within a beat where the most
    sound starts (onsets weighted by their length, up to ``longest`` steps) becomes the beat.

    A performance transcribed against its own tempo (POP909) can sit a 16th or an 8th off the grid's beats
    after the sub-step offset is gone; long notes (bass, chords) start on beats, so weighting by length
    finds the beat even under runs of even 16ths. 0 when the beat already is the grid's (ties keep it)."""
    if len(notes) == 0 or steps_per_beat <= 1:
        return 0
    weight = np.minimum(notes.end - notes.onset, longest).astype(np.float64)
    sound = np.bincount(notes.onset % steps_per_beat, weights=weight, minlength=steps_per_beat)
    return int(-np.argmax(sound) % steps_per_beat)


def on_grid_fraction(onsets: np.ndarray, period: float, tolerance: float = ON_GRID_TOLERANCE) -> float:
    """Fraction of onsets within ``tolerance`` steps of a grid line (1.0 for no onsets)."""
    if onsets.size == 0:
        return 1.0
    phase = np.mod(onsets / period + 0.5, 1.0) - 0.5
    return float(np.mean(np.abs(phase) <= tolerance + 1e-9))


def quantize_notes(
    onset: np.ndarray, end: np.ndarray, pitch: np.ndarray, velocity: np.ndarray, period: float, offset: float
) -> NoteArrays:
    """Round to grid steps after removing ``offset``; same-pitch notes are made disjoint.

    Duplicates (same pitch and step) merge to the loudest/longest; a re-strike cuts the
    sounding note. Every note lasts at least one step.
    """
    on = np.maximum(np.rint((onset - offset) / period), 0).astype(np.int64)
    off = np.maximum(np.rint((end - offset) / period).astype(np.int64), on + 1)
    vel = np.clip(velocity, 1, MAX_VELOCITY)
    order = np.lexsort((onset, on, pitch))
    pitch, on, off, vel, raw = pitch[order], on[order], off[order], vel[order], onset[order]
    first = np.ones(pitch.shape[0], dtype=bool)
    first[1:] = (pitch[1:] != pitch[:-1]) | (on[1:] != on[:-1])
    starts = np.flatnonzero(first)
    # a second attack in the same cell is a collision; the same attack on another track is a unison
    collisions = int(np.sum(~first[1:] & (raw[1:] != raw[:-1])))
    if starts.size:
        vel = np.maximum.reduceat(vel, starts)
        off = np.maximum.reduceat(off, starts)
        pitch, on = pitch[starts], on[starts]
    same = pitch[1:] == pitch[:-1]
    cut = off[:-1].copy()
    cut[same] = np.minimum(cut[same], on[1:][same])
    off[:-1] = cut
    return NoteArrays(pitch=pitch, onset=on, end=off, velocity=vel, collisions=collisions)


def notes_to_roll(notes: NoteArrays, length: int) -> np.ndarray:
    """Paint disjoint-per-pitch notes into a ``(128, length)`` uint8 code roll (cells <= 128*length)."""
    roll = np.zeros((NUM_PITCHES, length), dtype=np.uint8)
    end = np.minimum(notes.end, length)
    keep = end > notes.onset
    on, end = notes.onset[keep], end[keep]
    lengths = end - on
    if lengths.size == 0:
        return roll
    run_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = np.arange(int(lengths.sum())) - run_start + np.repeat(on, lengths)
    roll[np.repeat(notes.pitch[keep], lengths), cols] = np.repeat(notes.velocity[keep], lengths).astype(np.uint8)
    roll[notes.pitch[keep], on] |= ONSET_BIT
    return roll


def midi_notes(
    src: str | os.PathLike | Score, *, grid: str | Grid = "16th", sustain: bool = False
) -> tuple[NoteArrays, dict[str, Any]]:
    """Read and quantise the notes of a MIDI file (the grid-quantised reference of a round trip)."""
    grid = parse_grid(grid)
    score = load_score(src)
    tempo = first_tempo_bpm(score)
    tpq = int(score.ticks_per_quarter)
    if grid.beat_relative:
        period = tpq / grid.steps_per_quarter
    else:
        if not all(_valid_tempo(float(t.qpm)) for t in score.tempos):
            raise BadMidiError("a tempo event of 0 microseconds per quarter note: no time in seconds")
        score = score.to("second")
        period = 1.0 / grid.fps
    onset, end, pitch, velocity = _raw_notes(score, sustain)
    if onset.size == 0:
        raise BadMidiError("no notes (outside drum channels)")
    offset = detect_grid_offset(onset, period)
    notes = quantize_notes(onset, end, pitch, velocity, period, offset)
    shift = beat_shift(notes, grid.steps_per_quarter, grid.ruler_steps) if grid.steps_per_quarter else 0
    if shift:
        notes = replace(notes, onset=notes.onset + shift, end=notes.end + shift)
    meta = {
        "grid": grid.name,
        "tempo_bpm": tempo,
        "ticks_per_quarter": tpq,
        "grid_offset_steps": offset / period,
        "beat_shift_steps": shift,
        "on_grid_raw": on_grid_fraction(onset, period),
        "on_grid": on_grid_fraction(onset - offset, period),
        "sustain": bool(sustain),
        "source_notes": int(onset.size),
        "collisions": notes.collisions,
    }
    if not isinstance(src, Score):
        meta["source"] = str(src)
    return notes, meta


def midi_to_roll(
    src: str | os.PathLike | Score,
    *,
    grid: str | Grid = "16th",
    sustain: bool = False,
    max_steps: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """MIDI file (or symusic Score) -> ``(1, 128, T)`` uint8 velocities and metadata.

    ``T`` ends with the last note. ``max_steps=None`` means :data:`DEFAULT_MAX_STEPS`; a longer
    piece raises :class:`PieceTooLongError` before any roll memory is allocated.
    Metadata: ``grid``, ``tempo_bpm`` (first tempo), ``ticks_per_quarter``,
    ``grid_offset_steps``, ``beat_shift_steps`` (:func:`beat_shift`), ``on_grid_raw`` / ``on_grid``
    (onset fractions within 0.1 step of the grid before / after the offset removal), ``sustain``,
    ``source_notes``, ``steps``, ``notes``, ``source`` (the path, when given one).
    """
    limit = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
    notes, meta = midi_notes(src, grid=grid, sustain=sustain)
    length = int(notes.end.max())
    if length > limit:
        raise PieceTooLongError(f"too long: {length} steps > max {limit} (raise --max-steps-per-piece)")
    roll = notes_to_roll(notes, length)
    meta.update(steps=length, notes=len(notes))
    return roll[None], meta


def canonical_codes(codes: np.ndarray) -> np.ndarray:
    """Note codes ``(..., 128, T)`` made canonical: an onset bit on every sounding frame that starts a
    note (it has the bit, or silence before it), none elsewhere, and each note's onset velocity
    on all its frames. Canonical rolls decode to the same notes and look the same in pictures."""
    codes = np.asarray(codes, dtype=np.uint8)
    velocity = codes & VELOCITY_BITS
    sounding = velocity > 0
    before = np.zeros_like(sounding)
    before[..., 1:] = sounding[..., :-1]
    start = sounding & (((codes & ONSET_BIT) > 0) | ~before)
    steps = np.arange(codes.shape[-1])
    last_start = np.maximum.accumulate(np.where(start, steps, 0), axis=-1)
    note_velocity = np.take_along_axis(velocity, last_start, axis=-1)
    return (np.where(sounding, note_velocity, 0) | np.where(start, ONSET_BIT, 0)).astype(np.uint8)


def codes_to_planes(codes: np.ndarray) -> np.ndarray:
    """uint8 note codes ``(..., 128, T)`` -> float32 planes ``(..., 2, 128, T)`` (velocity / 127, onset)."""
    codes = canonical_codes(codes)
    velocity = (codes & VELOCITY_BITS).astype(np.float32) / MAX_VELOCITY
    onset = ((codes & ONSET_BIT) > 0).astype(np.float32)
    return np.stack([velocity, onset], axis=-3)


def planes_to_codes(planes: np.ndarray) -> np.ndarray:
    """float planes ``(..., 2, 128, T)`` -> canonical uint8 codes ``(..., 128, T)``."""
    planes = np.nan_to_num(np.asarray(planes, dtype=np.float32))
    velocity = np.clip(np.rint(planes[..., VELOCITY_PLANE, :, :] * MAX_VELOCITY), 0, MAX_VELOCITY).astype(np.uint8)
    onset = (planes[..., ONSET_PLANE, :, :] > 0.5) & (velocity > 0)
    return canonical_codes(velocity | np.where(onset, ONSET_BIT, 0).astype(np.uint8))


def as_uint8_roll(roll: Any) -> np.ndarray:
    """Canonical ``(128, T)`` uint8 note codes from codes ``(1, 128, T)`` / ``(128, T)``, float planes
    ``(2, 128, T)`` (numpy or torch), or float velocities in [0, 1] ``(1, 128, T)`` / ``(128, T)``
    (velocity only: onsets where a pitch starts sounding)."""
    if hasattr(roll, "detach"):
        roll = roll.detach().cpu().numpy()
    arr = np.asarray(roll)
    if arr.ndim == 3 and arr.shape[0] == ROLL_PLANES and arr.dtype != np.uint8:
        return planes_to_codes(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] != NUM_PITCHES:
        raise UserError(f"a piano-roll must have shape (1, 128, T), (128, T) or planes (2, 128, T), got "
                        f"{tuple(np.shape(roll))}")
    if arr.dtype == np.uint8:
        return canonical_codes(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return canonical_codes(np.clip(np.rint(np.nan_to_num(arr) * MAX_VELOCITY), 0, MAX_VELOCITY).astype(np.uint8))
    return canonical_codes(np.clip(arr, 0, MAX_VELOCITY).astype(np.uint8))


def roll_to_notes(roll: Any) -> NoteArrays:
    """Notes of a roll: each starts at an onset (see :func:`canonical_codes`) and lasts while its
    pitch sounds, up to the next onset; its velocity is the one at its onset."""
    codes = as_uint8_roll(roll)
    padded = np.zeros((codes.shape[0], codes.shape[1] + 2), dtype=np.uint8)
    padded[:, 1:-1] = codes
    start = (padded & ONSET_BIT) > 0
    boundary = start | ((padded & VELOCITY_BITS) == 0)  # a note ends at the next onset or silence
    pitch_s, time_s = np.nonzero(start)
    pitch_b, time_b = np.nonzero(boundary)
    width = padded.shape[1]
    key_b = pitch_b * width + time_b  # sorted row-major
    key_s = pitch_s * width + time_s
    nxt = np.searchsorted(key_b, key_s, side="right")
    end = key_b[nxt] - pitch_s * width
    velocity = padded[pitch_s, time_s] & VELOCITY_BITS
    return NoteArrays(pitch=pitch_s.astype(np.int64), onset=(time_s - 1).astype(np.int64),
                      end=(end - 1).astype(np.int64), velocity=velocity.astype(np.int64))


def roll_to_midi(
    roll: Any,
    path: str | os.PathLike | None = None,
    *,
    grid: str | Grid = "16th",
    tempo_bpm: float = DEFAULT_TEMPO_BPM,
) -> Score:
    """Roll -> one-track piano :class:`symusic.Score` (written atomically to ``path`` if given)."""
    grid = parse_grid(grid)
    if not tempo_bpm or tempo_bpm <= 0:
        raise UserError(f"tempo must be a positive number of beats per minute, got {tempo_bpm}")
    notes = roll_to_notes(roll)
    ticks_per_step = OUTPUT_TICKS_PER_QUARTER * grid.seconds_per_step(tempo_bpm) * tempo_bpm / 60.0
    start = np.rint(notes.onset * ticks_per_step).astype(np.int32)
    stop = np.rint(notes.end * ticks_per_step).astype(np.int32)
    order = np.lexsort((notes.pitch, start))
    score = Score(OUTPUT_TICKS_PER_QUARTER)
    score.tempos.append(Tempo(0, float(tempo_bpm)))
    track = Track("piano", 0, False)
    track.notes = Note.from_numpy(
        start[order], np.maximum(stop - start, 1)[order], notes.pitch[order].astype(np.int8),
        notes.velocity[order].astype(np.int8),
    )
    score.tracks.append(track)
    if path is not None:
        write_midi(score, path)
    return score


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Atomic MIDI write (:func:`fractalmidi.outdir.atomic_path`)."""
    with atomic_path(path) as tmp:
        score.dump_midi(tmp)
