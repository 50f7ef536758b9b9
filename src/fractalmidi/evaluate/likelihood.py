"""Negative log-likelihood of a set of pieces under a checkpoint (families with ``has_likelihood``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tqdm import tqdm

from fractalmidi.data.roll import codes_to_planes
from fractalmidi.evaluate.sets import PieceSource


def source_rolls(source: PieceSource, grid: str) -> list[tuple[str, np.ndarray]]:
    """``(label, uint8 roll (1, 128, T))`` per readable piece, on the checkpoint's grid."""
    from fractalmidi.data import midi_to_roll

    out = []
    for item in source.items:
        if source.kind == "prepared":
            out.append((source.label(item), np.asarray(source.data.piece(item))))
            continue
        try:
            roll, _ = midi_to_roll(item, grid=grid)
        except Exception:  # unreadable files are already reported by the feature pass
            continue
        out.append((str(item), roll))
    return out


@torch.no_grad()
def set_nll(model, rolls: list[tuple[str, np.ndarray]], *, max_steps: int, batch_size: int) -> dict:
    """Mean bits per pixel and nats per time step over the first ``max_steps`` of every piece.

    Each piece is cropped to the longest multiple of ``model.length_multiple`` that fits;
    pieces shorter than one multiple are skipped (counted in ``skipped``). ``exact`` is the
    model's own flag (False: e.g. FractalGen with MAR levels returns a one-sample estimate of
    an upper bound), None when unknown or nothing was scored.
    """
    multiple = model.length_multiple
    by_length: dict[int, list[np.ndarray]] = defaultdict(list)
    skipped = 0
    for _, roll in rolls:
        length = min(roll.shape[-1], max_steps) // multiple * multiple
        if length == 0:
            skipped += 1
            continue
        by_length[length].append(roll[..., :length])
    bits, nats, exact = [], [], []
    batches = [(length, group[i : i + batch_size]) for length, group in by_length.items()
               for i in range(0, len(group), batch_size)]
    for _, group in tqdm(batches, desc="nll", unit="batch", leave=False):
        x = torch.from_numpy(codes_to_planes(np.stack(group)[:, 0]))
        result = model.nll(x)
        bits.append(result["bits_per_pixel"].reshape(-1).double().cpu().numpy())
        nats.append(result["nats_per_step"].reshape(-1).double().cpu().numpy())
        exact.append(result.get("exact"))
    if not bits:
        return {"pieces": 0, "skipped": skipped, "bits_per_pixel": None, "nats_per_step": None, "exact": None}
    return {
        "pieces": int(sum(len(b) for b in bits)),
        "skipped": skipped,
        "max_steps": max_steps,
        "bits_per_pixel": float(np.concatenate(bits).mean()),
        "nats_per_step": float(np.concatenate(nats).mean()),
        "exact": None if None in exact else all(bool(e) for e in exact),
    }
