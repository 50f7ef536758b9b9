"""FractalGen learns: overfitting one real chorale bar, then sampling it back; sparsity bias."""

from __future__ import annotations

import pytest
import torch

from fractalmidi.models import build

CROP = 16
"""One 4/4 bar of 16th notes: 4 voices x 16 steps of a real JSB chorale."""
BATCH = 4
"""Copies of the crop per step: each gets its own MAR masks."""
LEARNING_RATE = 6e-3
MAX_STEPS = 300
TARGET = 0.005
"""Stop once the total loss is below this (nats): by then the notes, not just the silence, are learned."""


@pytest.fixture(scope="module")
def overfit(chorale_crop):
    """fractal-tiny trained on one chorale crop: (model, crop, losses).

    Without seams: a one-bar crop is one time span of top-level patches, so the seam condition is a
    constant there (no time neighbours), yet with it the memorised bar samples back less exactly
    (4 seeds, loss target 0.002: pixel accuracy 0.986-1.0 and recall 0.72-1.0 with seams, 0.993-1.0 and
    0.95-1.0 without); not understood, and what this test checks does not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    crop = chorale_crop(CROP)
    model = build("fractal-tiny", seams=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.95), weight_decay=0.0)
    losses = []
    for _ in range(MAX_STEPS):
        total, _ = model.loss(crop.expand(BATCH, -1, -1, -1))
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(total.item())
        if losses[-1] < TARGET:
            break
    yield model.eval(), crop, losses
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.data
def test_overfits_a_chorale_and_samples_it_back(overfit) -> None:
    model, crop, losses = overfit
    assert losses[-1] < 0.1 * losses[0]  # falls by >= 90% ...
    assert losses[-1] < TARGET, f"loss {losses[-1]:.4f} after {len(losses)} steps"  # ... and keeps falling
    notes = crop[:, 0] > 0
    assert notes.sum() >= 48  # four voices: a real chorale bar, not an empty crop
    with torch.no_grad():
        out = model.sample(torch.zeros(4, 2, 128, CROP), torch.ones(4, 2, 128, CROP, dtype=torch.bool),
                           generator=torch.Generator().manual_seed(0), temperature=0.1)
    assert (out == crop).all(dim=1).float().mean() >= 0.95  # pixel accuracy, both planes (mostly silence) ...
    played = out[:, 0] > 0
    recall = (played & notes).sum() / notes.expand_as(played).sum()
    precision = (played & notes).sum() / played.sum().clamp(min=1)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)  # ... and the notes themselves
    both = played & notes
    target = crop.expand_as(out)
    assert (out[:, 0][both] == target[:, 0][both]).float().mean() >= 0.9  # velocities
    assert (out[:, 1][both] == target[:, 1][both]).float().mean() >= 0.9  # where notes start
    # the likelihood of the memorised bar is far above that of a shifted copy
    nll = model.nll(torch.cat([crop, crop.roll(5, dims=2)]), generator=torch.Generator().manual_seed(0))
    assert nll["bits_per_pixel"][0] < 0.1 < nll["bits_per_pixel"][1]


@pytest.mark.slow
@pytest.mark.data
def test_sparsity_bias_lowers_note_density(overfit) -> None:
    model, crop, _ = overfit
    density = []
    for bias in (-4.0, 0.0, 4.0, 8.0, 16.0):
        with torch.no_grad():
            out = model.sample(torch.zeros(8, 2, 128, CROP), torch.ones(8, 2, 128, CROP, dtype=torch.bool),
                               generator=torch.Generator().manual_seed(1), sparsity_bias=bias)
        density.append((out[:, 0] > 0).float().mean().item())
    assert density == sorted(density, reverse=True), density
    assert density[-1] < 0.5 * density[1], density
