"""The JSB chorales likelihood benchmark (Boulanger-Lewandowski, Vincent & Bengio, ICML 2012).

Protocol: the quarter-note file with its 229/76/77 split, 88 binary keys (MIDI 21-108), negative
log-likelihood in nats per frame with every frame of every test piece counted once (4,725 test
frames, rests included: a rest is a frame whose 88 keys are all silent). Padding never counts.

Models are scored piece by piece in windows of the length they were trained on: the first window
scores its frames from the piece's start, each later one scores only frames no earlier window
scored, given the frames before them in the window. Every factor is a normalised conditional of
new frames given some of the past, so the sum is the exact log-likelihood of a (windowed) model
whenever the model's own likelihood is exact (FractalGen with AR levels in a time-first order).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fractalmidi.data.cache import PreparedData
from fractalmidi.data.roll import PIANO_LOWEST, codes_to_planes
from fractalmidi.models.base import Generator

KEYBOARD_LOW = PIANO_LOWEST
KEYBOARD_HIGH = 108
"""The protocol's 88 keys, MIDI 21..108 inclusive."""
NUM_KEYS = KEYBOARD_HIGH - KEYBOARD_LOW + 1
TEST_FRAMES = 4725
"""Frames of the 77 test pieces: the count every published figure averages over."""
PUBLISHED = (
    ("TCN (Bai et al. 2018)", 8.10),
    ("STORN (Bayer & Osendorfer 2014)", 6.91),
    ("DMM (Krishnan et al. 2017)", 6.39),
    ("RNN-NADE (Boulanger-Lewandowski et al. 2012, as quoted later)", 5.19),
    ("DMM-Aug (Krishnan et al. 2017)", 5.118),
)
"""Test NLL (nats per frame) on this protocol as the issue quotes them."""
SMOOTHING = 1.0
"""Add-one (Laplace) counts for the baselines: this reproduces the unigram's 11.061."""


def keyboard_frames(data: PreparedData, split: str) -> list[np.ndarray]:
    """Every piece of ``split`` as ``(T, 88)`` bool frames (sounding keys), in the file's order."""
    return [(data.piece(i)[0, KEYBOARD_LOW : KEYBOARD_HIGH + 1].T > 0) for i in data.split(split)]


def count_frames(pieces: list[np.ndarray]) -> int:
    return int(sum(p.shape[0] for p in pieces))


def _bernoulli_nll(x: np.ndarray, p: np.ndarray) -> float:
    """Summed NLL (nats) of binary ``x`` under independent Bernoulli probabilities ``p`` (same shape)."""
    return float(-(np.where(x, np.log(p), np.log1p(-p))).sum())


def unigram_probs(train: list[np.ndarray], smoothing: float = SMOOTHING) -> np.ndarray:
    """Per-key probability of sounding, from the training frames (add-``smoothing`` counts)."""
    frames = np.concatenate(train)
    return (frames.sum(0) + smoothing) / (frames.shape[0] + 2 * smoothing)


def unigram_nll(train: list[np.ndarray], test: list[np.ndarray], smoothing: float = SMOOTHING) -> float:
    """Nats per test frame of independent per-key Bernoullis (no time dependence)."""
    p = unigram_probs(train, smoothing)
    return sum(_bernoulli_nll(x, np.broadcast_to(p, x.shape)) for x in test) / count_frames(test)


def markov_nll(train: list[np.ndarray], test: list[np.ndarray], smoothing: float = SMOOTHING) -> float:
    """Nats per test frame of per-key first-order Markov chains; a piece's first frame is unigram."""
    counts = np.zeros((2, NUM_KEYS))  # sounding-next counts after a silent (0) / sounding (1) key
    totals = np.zeros((2, NUM_KEYS))
    for piece in train:
        before, after = piece[:-1], piece[1:]
        for state in (0, 1):
            at = before == state
            totals[state] += at.sum(0)
            counts[state] += (after & at).sum(0)
    transition = (counts + smoothing) / (totals + 2 * smoothing)
    first = unigram_probs(train, smoothing)
    keys = np.arange(NUM_KEYS)
    nats = 0.0
    for piece in test:
        nats += _bernoulli_nll(piece[:1], first[None])
        nats += _bernoulli_nll(piece[1:], transition[piece[:-1].astype(np.int64), keys])
    return nats / count_frames(test)


@dataclass(frozen=True)
class Window:
    """Frames ``[start, stop)`` of one piece fed to the model; those from ``score_from`` on are scored."""

    piece: int
    start: int
    stop: int
    score_from: int


def plan_windows(lengths: list[int], window: int, stride: int) -> list[Window]:
    """Windows of at most ``window`` frames, ``stride`` apart, that score every frame exactly once."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride {stride}, window {window}")
    out = []
    for piece, length in enumerate(lengths):
        scored, start = 0, 0
        while scored < length:
            start = max(0, min(start, length - window))
            stop = min(start + window, length)
            out.append(Window(piece, start, stop, scored))
            scored, start = stop, start + stride
    return out


def _padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def transposed(codes: np.ndarray, shift: int, rows: range) -> tuple[np.ndarray, np.ndarray]:
    """Note-code rolls ``(..., 128, T)`` moved ``shift`` semitones, and ``(..., T)`` bool: the frames
    that lost a note outside ``rows`` (the keys a model writes; those notes are dropped)."""
    out = np.zeros_like(codes)
    low, high = max(rows.start - shift, 0), min(rows.stop - shift, codes.shape[-2])
    if high > low:
        out[..., low + shift : high + shift, :] = codes[..., low:high, :]
    lost = (codes > 0).sum(-2) != (out > 0).sum(-2)
    return out, lost


@torch.no_grad()
def model_nll(model: Generator, rolls: list[np.ndarray], *, window: int, stride: int, batch_size: int = 16,
              shifts: tuple[int, ...] = (0,), progress: Any = None) -> dict[str, Any]:
    """Exact NLL of uint8 note-code rolls ``(1, 128, T)`` (a split's pieces) under ``model``, in nats per frame.

    Each window is padded with silence to the model's length multiple; padded frames, and the
    context frames a window re-reads, are never scored (``scored_frames``). Returns the totals, the
    per-piece nats, the pitch rows scored (the model's ``modelled_rows``) and whether the
    model calls its likelihood exact.

    With several ``shifts`` the model is the equal mixture, frame by frame, of the model read in
    each transposition: p(frame | past) = mean over s of p(frame moved s | past moved s). Every
    term is a normalised conditional of the frame given its past (a frame that would lose a note
    off the model's keys gets probability 0 from that term; a past that lost one is read without
    it), so the product stays an exact likelihood of a proper distribution.
    """
    multiple = model.length_multiple
    if window % multiple:
        raise ValueError(f"window {window} is not a multiple of the model's length multiple {multiple}")
    if len(shifts) > 1 and not model.frame_by_frame:
        raise ValueError("a transposition mixture needs a model with exact frame-by-frame conditionals "
                         "(all-AR FractalGen with model.frame_block)")
    windows = plan_windows([r.shape[-1] for r in rolls], window, stride)
    groups: dict[int, list[Window]] = defaultdict(list)
    for w in windows:
        groups[_padded(w.stop - w.start, multiple)].append(w)
    # log-probability of every frame of every piece under each shift
    logp = [np.zeros((len(shifts), r.shape[-1])) for r in rolls]
    exact = True
    batches = [(length, group[i : i + batch_size]) for length, group in sorted(groups.items())
               for i in range(0, len(group), batch_size)]
    for k, shift in enumerate(shifts):
        moved = [transposed(r, shift, model.modelled_rows) for r in rolls]
        for length, batch in batches:
            codes = np.zeros((len(batch), rolls[0].shape[1], length), dtype=np.uint8)
            scored = np.zeros((len(batch), length), dtype=bool)
            for row, w in enumerate(batch):
                codes[row, :, : w.stop - w.start] = moved[w.piece][0][0, :, w.start : w.stop]
                scored[row, w.score_from - w.start : w.stop - w.start] = True
            x = torch.from_numpy(codes_to_planes(codes))
            out = model.nll(x, scored_frames=torch.from_numpy(scored))
            exact = exact and bool(out.get("exact"))
            nats = out["frame_nats"].double().cpu().numpy()
            for row, w in enumerate(batch):
                logp[w.piece][k, w.score_from : w.stop] = -nats[row, w.score_from - w.start : w.stop - w.start]
            if progress is not None:
                progress(len(batch))
        for piece, (_, lost) in zip(logp, moved):
            piece[k, lost[0]] = -math.inf
    # the mixture: log of the mean probability over shifts, per frame (a frame no shift allows stays -inf)
    per_piece = np.array([-(torch.logsumexp(torch.from_numpy(p), 0) - math.log(len(shifts))).sum().item()
                          for p in logp])
    total_frames = int(sum(r.shape[-1] for r in rolls))
    return {
        "nats": float(per_piece.sum()),
        "frames": total_frames,
        "nats_per_frame": float(per_piece.sum() / total_frames) if total_frames else math.nan,
        "per_piece_nats": per_piece.tolist(),
        "windows": len(windows),
        "rows": model.modelled_rows,
        "shifts": tuple(shifts),
        "exact": exact,
    }


def split_rolls(data: PreparedData, split: str) -> list[np.ndarray]:
    """The uint8 ``(1, 128, T)`` rolls of a split, whole pieces."""
    return [data.piece(i) for i in data.split(split)]
