"""Cutting regions of a piano-roll into square patches and back (row = pitch, column = time)."""

from __future__ import annotations

import torch


def patchify(region: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, (H/size) * (W/size), size * size)``, patches in row-major grid order."""
    n, height, width = region.shape
    grid = region.reshape(n, height // size, size, width // size, size).permute(0, 1, 3, 2, 4)
    return grid.reshape(n, (height // size) * (width // size), size * size)


def unpatchify(tokens: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(N, L, size * size)`` -> ``(N, height, width)``."""
    n = tokens.shape[0]
    grid = tokens.reshape(n, height // size, width // size, size, size).permute(0, 1, 3, 2, 4)
    return grid.reshape(n, height, width)


def grid_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Rows (pitch bands) and columns (time spans) of the patch grid."""
    return height // size, width // size


def fold_frames(states: torch.Tensor, first: int, side: int) -> torch.Tensor:
    """``(N, H, T)`` rows ``first .. first + side**2 - 1`` -> ``(N, side, side * T)``: time step t becomes
    the square block of columns ``t * side ..``, its key ``first + side * r + c`` at row r, column c."""
    n, _, steps = states.shape
    band = states[:, first : first + side * side]
    return band.reshape(n, side, side, steps).permute(0, 1, 3, 2).reshape(n, side, steps * side)


def unfold_frames(image: torch.Tensor, first: int, height: int) -> torch.Tensor:
    """Inverse of :func:`fold_frames` ``(N, side, side * T)`` -> ``(N, height, T)``, zero outside the band."""
    n, side, width = image.shape
    steps = width // side
    out = image.new_zeros(n, height, steps)
    out[:, first : first + side * side] = image.reshape(n, side, steps, side).permute(0, 1, 3, 2).reshape(
        n, side * side, steps)
    return out
