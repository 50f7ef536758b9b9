"""Seam conditions: a MAR level hands each patch the exact pixel columns along its time edges."""

from __future__ import annotations

import torch

from fractalmidi.models.fractal.head import PIXEL_FEATURES
from fractalmidi.models.fractal.mar import MARLevel

P = 4


def test_each_patch_gets_its_visible_neighbours_edge_columns() -> None:
    level = MARLevel(patch_size=P, cond_dim=8, num_conds=1, width=8, depth=1, heads=2, seams=True)
    assert level.child_num_conds == 6
    grid = (2, 3)  # 2 pitch bands x 3 time spans
    features = torch.arange(2 * 6 * P * P * PIXEL_FEATURES, dtype=torch.float32).reshape(2, 6, -1)
    visible = torch.tensor([[True, False, True, True, True, False], [True] * 6])
    captured = {}
    level.seam_embed.register_forward_hook(lambda mod, args, out: captured.update(x=args[0]))
    level.seams(features, visible, grid)
    x = captured["x"].reshape(2, 2, 3, 2, P * PIXEL_FEATURES + 1)  # (n, band, span, left/right, column + flag)
    pixels = features.reshape(2, 2, 3, P, P, PIXEL_FEATURES)
    # band 0, span 1 (hidden itself): its left neighbour (span 0, visible) shows its last column...
    assert torch.equal(x[0, 0, 1, 0, :-1], pixels[0, 0, 0, :, P - 1].flatten()) and x[0, 0, 1, 0, -1] == 1
    # ...and its right neighbour (span 2, visible) its first column
    assert torch.equal(x[0, 0, 1, 1, :-1], pixels[0, 0, 2, :, 0].flatten()) and x[0, 0, 1, 1, -1] == 1
    # a hidden neighbour shows nothing, flag off: span 2's left is span 1 (hidden)
    assert not x[0, 0, 2, 0].any()
    # beyond the roll's edges there is no neighbour
    assert not x[:, :, 0, 0].any() and not x[:, :, 2, 1].any()
    # band 1 span 2 is hidden: its left neighbour sees nothing on the right
    assert not x[0, 1, 1, 1].any()
    # no leak between bands or samples
    assert torch.equal(x[1, 1, 2, 0, :-1], pixels[1, 1, 1, :, P - 1].flatten())


def test_a_seamed_model_trains_samples_and_keeps_known_pixels() -> None:
    from fractalmidi.models import build

    torch.manual_seed(0)
    model = build("fractal-tiny", seams=True)
    x = torch.zeros(2, 2, 128, 32)
    x[:, 0, 60, 3:20] = 0.7
    x[:, 1, 60, 3] = 1.0
    loss, _ = model.loss(x)
    loss.backward()
    assert model.levels[0].seam_embed.weight.grad.abs().sum() > 0
    model.eval()
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[..., 16:] = True
    out = model.sample(x, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[..., :16], x[..., :16])


def test_piece_edge_marks_reach_only_the_first_and_last_columns() -> None:
    """``edge_crops``: the top level's first (last) patch column gets a learned mark when the roll begins at a piece's
    start (holds its end); the loss trains the marks, and sampling marks both edges of every roll."""
    from fractalmidi.models import build

    torch.manual_seed(0)
    model = build("fractal-tiny", edge_crops=0.25)
    assert model.edges is not None and build("fractal-tiny").edges is None
    marks = model._marks(torch.tensor([[True, False], [False, True]]), torch.zeros(2, 128, 64))
    columns = marks.reshape(2, 8, 4, -1)
    assert torch.equal(columns[0, :, 0], model.edges[0].detach().expand(8, -1))
    assert torch.equal(columns[1, :, 3], model.edges[1].detach().expand(8, -1))
    assert not columns[0, :, 1:].any() and not columns[1, :, :3].any()
    x = torch.zeros(2, 2, 128, 64)
    x[:, 0, 60, 3:20] = 0.7
    x[:, 1, 60, 3] = 1.0
    loss, _ = model.loss(x, edges=torch.tensor([[True, True], [False, False]]))
    loss.backward()
    assert model.edges.grad.abs().sum() > 0
    model.eval()
    seen = []
    hook = model.levels[0].register_forward_hook(lambda m, args, out: seen.append(args[4]))
    model.sample(torch.zeros(1, 2, 128, 64), torch.ones(1, 2, 128, 64, dtype=torch.bool),
                 generator=torch.Generator().manual_seed(0))
    model.sample(torch.zeros(1, 2, 128, 64), torch.ones(1, 2, 128, 64, dtype=torch.bool),
                 generator=torch.Generator().manual_seed(0), edges="end")
    hook.remove()
    both, end = seen[0], seen[-1]
    assert torch.equal(both, model._marks(torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 128, 64)))
    assert torch.equal(end, model._marks(torch.tensor([[False, True]]), torch.zeros(1, 128, 64)))
