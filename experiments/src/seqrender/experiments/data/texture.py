"""Solid (3-D) textures for the procedural renderer: a brightness pattern fixed in world space, so it
is consistent across views. Used to give structure-from-motion features to otherwise flat-coloured
scenes (the embedded dataset itself is rendered without one)."""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SolidTexture:
    """Multi-octave value noise: random values on cubic lattices over [−extent, extent]³,
    trilinearly interpolated and averaged, then sharpened into blobs by a sigmoid
    (s = sigmoid(sharpness·(noise − ½))); the surface colour is multiplied by 1 − contrast·s."""

    cells: tuple[int, ...] = (32, 64)   # lattice cells along each axis, one entry per octave
    extent: float = 1.5
    contrast: float = 0.8
    sharpness: float = 30.0
    seed: int = 0

    def __call__(self, points: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) brightness factors in [1 − contrast, 1]."""
        generator = torch.Generator().manual_seed(self.seed)
        grid = (points / self.extent).clamp(-1, 1).reshape(1, 1, 1, -1, 3).float()
        noise = torch.zeros(points.shape[0])
        for cells in self.cells:
            volume = torch.rand((1, 1, cells + 1, cells + 1, cells + 1), generator=generator)
            noise += torch.nn.functional.grid_sample(volume, grid, mode="bilinear", align_corners=True).reshape(-1)
        return 1 - self.contrast * torch.sigmoid(self.sharpness * (noise / len(self.cells) - 0.5))
