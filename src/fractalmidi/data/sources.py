"""Where pieces come from: folder layouts (midi-dir, POP909, Aria-MIDI, JSB) and Bach from music21.

A source is a *stream* of small picklable :class:`Job` items, so a tree of a million files is
never listed in memory; :func:`convert_job` turns one job into a roll inside a worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from symusic import Note, Score, Tempo, Track

from fractalmidi.data.roll import NUM_PITCHES, BadMidiError, canonical_codes, midi_to_roll
from fractalmidi.errors import UserError

LAYOUTS = ("auto", "midi-dir", "pop909", "jsb", "jsb-quarter", "aria")
DATASETS = ("bach", "folk")
"""Datasets inside the music21 package (no download): its Bach chorales, and the ~1,000 fiddle tunes
(reels, hornpipes, jigs: one melody each) of Ryan's Mammoth Collection."""
FOLK_FOLDER = "ryansMammoth"
SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi")

LAYOUT_DEFAULT_GRID = {"midi-dir": "16th", "pop909": "16th", "jsb": "16th", "jsb-quarter": "quarter",
                       "aria": "fps:16", "bach": "16th", "folk": "16th"}
"""Aria-MIDI holds transcribed performances whose beat grid is meaningless: absolute frames."""
LAYOUT_FIXED_GRID = {"jsb": "16th", "jsb-quarter": "quarter"}
"""Layouts whose files hold frames already quantised to one grid."""

JSB_FILE = "Jsb16thSeparated.json"
"""The JSON copy of the Coconet file (the pickle is never loaded): SATB pitches per 16th, -1 = rest."""
JSB_QUARTER_FILE = "jsb-chorales-quarter.json"
"""Boulanger-Lewandowski's benchmark file: per quarter-note frame, the list of sounding MIDI pitches
(an empty list is a rest, a frame like any other)."""

JSB_VELOCITY = 90
"""JSB chorales carry no dynamics: every sounding pitch gets this velocity."""

CHORALE_TEMPO_BPM = 100.0
"""Neither JSB nor most corpus chorales state a tempo; a moderate chorale tempo for playback."""

BACH_VELOCITY = 90
"""Velocity of every note of a music21 corpus score (the scores carry no dynamics)."""

BACH_TICKS_PER_QUARTER = 480
BACH_NAME = re.compile(r"^bwv[\d.]+\.(mxl|xml)$")
"""Chorale files of music21's bundled Bach corpus (4-part harmonisations, ~410 files)."""

POP909_NAME = re.compile(r"^\d{3}\.midi?$")

DIGEST_KEY = "digest"
"""Meta entry with a hash of the piece's roll: identical content is kept once."""
DIGEST_BYTES = 16



@dataclass(frozen=True)
class Job:
    """One piece to convert: ``key`` names it in the manifest (a path, or e.g. ``jsb:train/3``)."""

    key: str
    kind: str = "midi"
    payload: Any = None
    split: str | None = None


@dataclass
class Source:
    """A stream of jobs plus what the layout implies."""

    layout: str
    root: str
    jobs: Iterator[Job]
    total: int | None = None
    fixed_splits: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def iter_midi_files(root: Path, unreadable: list[OSError] | None = None) -> Iterator[Path]:
    """Every .mid/.midi under ``root``, streamed directory by directory in sorted order.

    A folder that cannot be listed is appended to ``unreadable`` (when given) instead of being
    passed over in silence."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=None if unreadable is None else unreadable.append):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(MIDI_SUFFIXES):
                yield Path(dirpath) / name


def _midi_dir_jobs(root: Path) -> Iterator[Job]:
    """Jobs of a folder tree; an unreadable subfolder becomes a skipped job naming the reason."""
    unreadable: list[OSError] = []
    for path in iter_midi_files(root, unreadable):
        yield from _unreadable_jobs(unreadable)
        yield Job(str(path))
    yield from _unreadable_jobs(unreadable)


def _unreadable_jobs(errors: list[OSError]) -> Iterator[Job]:
    while errors:
        err = errors.pop(0)
        yield Job(key=str(err.filename), kind="unreadable", payload=f"cannot list the folder ({err.strerror or err})")


def group_key(key: str) -> str:
    """Pieces with the same file name stem (``melody/tune1.mid``, ``chords/tune1.mid``) are one
    tune: they share a split so that no copy of a test tune is trained on."""
    return Path(key).stem.lower()


def iter_pop909_files(root: Path) -> Iterator[Path]:
    """POP909 songs: ``NNN/NNN.mid`` (original layout) or a flat ``NNN.mid`` folder; no versions/."""
    for entry in sorted(os.listdir(root)):
        path = root / entry
        if path.is_dir() and entry.isdigit():
            for suffix in MIDI_SUFFIXES:
                song = path / f"{entry}{suffix}"
                if song.is_file():
                    yield song
                    break
        elif POP909_NAME.match(entry) and path.is_file():
            yield path


def detect_layout(root: Path) -> str:
    """``jsb`` for the JSB folder, ``pop909`` for NNN.mid songs, else ``midi-dir``."""
    if (root / JSB_FILE).is_file():
        return "jsb"
    if root.name.lower() == "pop909" or (root / "001" / "001.mid").is_file():
        return "pop909"
    return "midi-dir"


def open_source(src: str | os.PathLike | None, *, layout: str = "auto", dataset: str | None = None) -> Source:
    """Resolve SRC / --layout / --dataset into a :class:`Source`; bad combinations are UserErrors."""
    if dataset is not None:
        if dataset not in DATASETS:
            raise UserError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
        if src is not None:
            raise UserError("give either SRC or --dataset, not both")
        paths = corpus_paths(dataset)
        jobs = (Job(key=f"music21:{dataset}/{p.name}", kind="corpus", payload=str(p)) for p in paths)
        return Source(layout=dataset, root="music21 corpus", jobs=jobs, total=len(paths))
    if src is None:
        raise UserError(f"give SRC (a folder of MIDI files or a known dataset folder) "
                        f"or --dataset {'|'.join(DATASETS)}")
    root = Path(src).expanduser()
    if not root.is_dir():
        raise UserError(f"SRC must be a folder of MIDI files, got {src!s} (not a folder)")
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout in ("jsb", "jsb-quarter"):
        return _jsb_source(root, layout)
    if layout == "pop909":
        files = list(iter_pop909_files(root))
        if not files:
            raise UserError(f"no POP909 songs (NNN.mid or NNN/NNN.mid) in {root}")
        return Source(layout=layout, root=str(root), jobs=(Job(str(p)) for p in files), total=len(files))
    return Source(layout=layout, root=str(root), jobs=_midi_dir_jobs(root))


def _jsb_source(root: Path, layout: str) -> Source:
    """Both JSB files keep the standard 229/76/77 split; pieces are keyed ``jsb:SPLIT/I``."""
    data = read_jsb_json(root, JSB_QUARTER_FILE if layout == "jsb-quarter" else JSB_FILE)
    jobs = (
        Job(key=f"jsb:{split}/{i}", kind=layout, payload=piece, split=split)
        for split in SPLITS
        for i, piece in enumerate(data[split])
    )
    return Source(layout=layout, root=str(root), jobs=jobs, total=sum(len(data[s]) for s in SPLITS), fixed_splits=True)


def read_jsb_json(root: Path, name: str = JSB_FILE) -> dict[str, list]:
    path = Path(root) / name
    if not path.is_file():
        raise UserError(f"JSB layout needs {name} in {root}")
    data = json.loads(path.read_text())
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise UserError(f"{path} lacks the split(s) {', '.join(missing)}")
    return data


def jsb_roll(voices: list[list[float]]) -> np.ndarray:
    """SATB pitch rows (one per 16th, -1/NaN = rest) -> ``(1, 128, T)`` uint8 codes; held notes join
    (the file has no onsets: a pitch that starts sounding is an onset)."""
    rows = np.asarray(voices, dtype=np.float64).reshape(len(voices), -1)
    roll = np.zeros((1, NUM_PITCHES, rows.shape[0]), dtype=np.uint8)
    t, v = np.nonzero(np.nan_to_num(rows, nan=-1.0) >= 0)
    roll[0, rows[t, v].astype(np.int64), t] = JSB_VELOCITY
    return canonical_codes(roll)


def frames_roll(frames: list[list[int]]) -> np.ndarray:
    """Frames of sounding MIDI pitches (``[[60, 64, 67], [], ...]``) -> ``(1, 128, T)`` uint8 codes.

    The benchmark's frames are binary: every sounding pitch gets ``JSB_VELOCITY``, and a pitch that
    starts sounding is an onset (the file cannot tell held from repeated notes). A pitch outside
    0..127 is a ``BadMidiError`` (checked before it could index anything).
    """
    roll = np.zeros((1, NUM_PITCHES, len(frames)), dtype=np.uint8)
    for t, pitches in enumerate(frames):
        for pitch in pitches:
            if not (isinstance(pitch, int) and 0 <= pitch < NUM_PITCHES):
                raise BadMidiError(f"frame {t}: {pitch!r} is not a MIDI pitch 0..127")
            roll[0, pitch, t] = JSB_VELOCITY
    return canonical_codes(roll)


def load_jsb_chorales(root: str | os.PathLike | None = None) -> dict[str, list[np.ndarray]]:
    """The JSB chorales as ``{"train"|"valid"|"test": [(1, 128, T) uint8 rolls]}`` (229/76/77)."""
    if root is None:
        from fractalmidi.settings import shared_data_dir

        root = shared_data_dir() / "jsb_chorales"
    data = read_jsb_json(Path(root))
    return {split: [jsb_roll(piece) for piece in data[split]] for split in SPLITS}


def bach_chorale_paths() -> list[Path]:
    """The Bach chorale scores bundled with music21 (no download), sorted by name."""
    from music21 import corpus

    paths = [Path(p) for p in corpus.getComposer("bach") if BACH_NAME.match(Path(p).name)]
    return sorted(paths, key=lambda p: p.name)


def corpus_paths(dataset: str) -> list[Path]:
    """The files of a music21 corpus dataset (see :data:`DATASETS`), sorted by name."""
    if dataset == "bach":
        return bach_chorale_paths()
    import music21

    return sorted((Path(music21.__file__).parent / "corpus" / FOLK_FOLDER).glob("*.abc"))


def corpus_score(path: str | os.PathLike) -> Score:
    """Parse a music21 corpus score (MusicXML, ABC...) into a MIDI-like symusic Score (tied notes joined)."""
    from music21 import converter, tempo

    stream = converter.parse(str(path))
    marks = list(stream.recurse().getElementsByClass(tempo.MetronomeMark))
    bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else CHORALE_TEMPO_BPM
    times: list[int] = []
    durations: list[int] = []
    pitches: list[int] = []
    for part in stream.parts or [stream]:
        tied: dict[int, int] = {}  # pitch -> index of the note a tie continues
        for element in part.flatten().notes:
            start = round(float(element.offset) * BACH_TICKS_PER_QUARTER)
            length = max(1, round(float(element.quarterLength) * BACH_TICKS_PER_QUARTER))
            for note in element.notes if element.isChord else [element]:
                midi = note.pitch.midi
                tie = note.tie.type if note.tie is not None else None
                if tie in ("stop", "continue") and midi in tied:
                    i = tied[midi]
                    durations[i] = start + length - times[i]
                else:
                    tied[midi] = len(times)
                    times.append(start)
                    durations.append(length)
                    pitches.append(midi)
                if tie not in ("start", "continue"):
                    tied.pop(midi, None)
    score = Score(BACH_TICKS_PER_QUARTER)
    score.tempos.append(Tempo(0, bpm))
    track = Track("chorale", 0, False)
    if times:
        track.notes = Note.from_numpy(
            np.asarray(times, np.int32), np.asarray(durations, np.int32), np.asarray(pitches, np.int8),
            np.full(len(times), BACH_VELOCITY, np.int8),
        )
    score.tracks.append(track)
    return score


def load_bach_chorales(limit: int | None = None, *, grid: str = "16th") -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(name, (1, 128, T) uint8 roll, meta)`` for the music21 Bach chorales (parsing is slow:
    ~0.15 s a piece; ``fractalmidi prepare --dataset bach`` does it once, in parallel)."""
    for path in bach_chorale_paths()[:limit]:
        roll, meta = midi_to_roll(corpus_score(path), grid=grid)
        yield path.name, roll, {**meta, "source": f"music21:bach/{path.name}"}


def convert_job(job: Job, grid: str, sustain: bool, max_steps: int) -> tuple[np.ndarray | None, dict | str]:
    """Worker entry point: ``(roll, meta)`` on success, ``(None, reason)`` for a skipped piece."""
    try:
        if job.kind == "unreadable":
            return None, str(job.payload)
        if job.kind in ("jsb", "jsb-quarter"):
            if len(job.payload) > max_steps:
                raise BadMidiError(f"too long: {len(job.payload)} steps > max {max_steps}")
            roll = jsb_roll(job.payload) if job.kind == "jsb" else frames_roll(job.payload)
            if not roll.any():
                raise BadMidiError("no notes")
            meta = {"grid": LAYOUT_FIXED_GRID[job.kind], "tempo_bpm": CHORALE_TEMPO_BPM, "steps": int(roll.shape[-1])}
        elif job.kind == "corpus":
            roll, meta = midi_to_roll(corpus_score(job.payload), grid=grid, sustain=sustain, max_steps=max_steps)
        else:
            roll, meta = midi_to_roll(job.key, grid=grid, sustain=sustain, max_steps=max_steps)
    except UserError as err:
        return None, str(err)
    except Exception as err:  # any parser bug must skip the file, never stop the run
        return None, f"{type(err).__name__}: {err}"
    meta["source"] = job.key
    meta[DIGEST_KEY] = hashlib.blake2b(roll.tobytes(), digest_size=DIGEST_BYTES).hexdigest()
    return roll, meta
