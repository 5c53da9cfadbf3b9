"""The sampling grid torch's ``grid_sample`` needs, built from per-sample output->input maps in
continuous coordinates (pixel or voxel centres at +0.5), for images (3×3 maps, 4-D input) and
volumes (4×4 maps, 5-D input) alike. Only the output frame's points are made: the lazy crop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["sampling_grid"]


def sampling_grid(inverses: np.ndarray, in_size: tuple[int, ...], size: tuple[int, ...], clamp: np.ndarray,
                  device: torch.device) -> torch.Tensor:
    """B×(out size)×n grid (``align_corners=False``) for n = 2 (sizes (H, W), 3×3 maps) or n = 3
    (sizes (D, H, W), 4×4 maps acting on (x, y, z, 1)). ``clamp`` (B bools): samples whose source
    points are held within the outermost pixel centres (the edge pixel repeats, as cv2's
    BORDER_REPLICATE), for outputs that lie inside the input."""
    n = len(size)
    if np.abs(inverses[:, n, :n]).max(initial=0.0) < 1e-12 and np.all(inverses[:, n, n] == 1.0):
        return _affine_grid(inverses, in_size, size, clamp, device)
    # float32: coordinates of a few thousand pixels keep ~1e-4 px, far below interpolation error.
    inv = torch.as_tensor(inverses, dtype=torch.float32, device=device)
    # Axes listed x first (grid_sample's order), sizes are listed slowest axis first.
    axes = [torch.arange(s, dtype=torch.float32, device=device) + 0.5 for s in size]
    mesh = torch.meshgrid(*axes, indexing="ij")                                  # each (out size)
    pts = torch.stack([*reversed(mesh), torch.ones_like(mesh[0])], dim=-1).reshape(1, -1, n + 1)
    src = pts @ inv.transpose(1, 2)                                             # B×N×(n+1)
    z = src[..., n:].clamp_min(1e-6)  # points behind a projection land far outside: fill
    keep = torch.as_tensor(clamp, device=device)[:, None]
    coords = []
    for k, extent in enumerate(reversed(in_size)):  # x (width), y (height)[, z (depth)]
        c = src[..., k] / z[..., 0]
        c = torch.where(keep, c.clamp(0.5, extent - 0.5), c)
        coords.append(c * (2.0 / extent) - 1.0)
    return torch.stack(coords, dim=-1).reshape(-1, *size, n)


def _normalizer(size: tuple[int, ...]) -> np.ndarray:
    """Continuous coordinates (x first) -> grid_sample's -1..1 (align_corners=False)."""
    ext = np.array(size[::-1], dtype=np.float64)
    m = np.diag([*(2.0 / ext), 1.0])
    m[:-1, -1] = -1.0
    return m


def _affine_grid(inverses: np.ndarray, in_size: tuple[int, ...], size: tuple[int, ...], clamp: np.ndarray,
                 device: torch.device) -> torch.Tensor:
    """Affine maps (every map of a volume, most of an image's): torch's affine_grid, several times
    cheaper than the general projective grid, from the map in normalised coordinates."""
    n = len(size)
    theta = _normalizer(in_size) @ inverses @ np.linalg.inv(_normalizer(size))
    t = torch.as_tensor(theta[:, :n], dtype=torch.float32, device=device)
    grid = F.affine_grid(t, [len(inverses), 1, *size], align_corners=False)
    if clamp.any():
        # The outermost pixel centres, in normalised units: the edge pixel repeats beyond them.
        lim = torch.tensor([1.0 - 1.0 / e for e in reversed(in_size)], dtype=grid.dtype, device=device)
        keep = torch.as_tensor(clamp, device=device).view(-1, *([1] * (n + 1)))
        grid = torch.where(keep, torch.maximum(torch.minimum(grid, lim), -lim), grid)
    return grid
