"""Per-scene optimisation of 3-D Gaussians (3DGS-style, no densification) with this package's
rasteriser: the baseline a feed-forward reconstruction is compared with.

Gaussians start uniform in the cube [−extent, extent]³ (as 3DGS does on synthetic scenes without
SfM points), grey, with opacity `init_opacity` and isotropic scale `init_scale`; Adam minimises the
mean squared error of their renders against the given views for `iterations` steps (every view
each step). Parameters are optimised unconstrained: log-scales, logit-opacities, raw quaternions,
raw colours.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from seqrender.recon.rasterizer import Gaussians, RasterConfig, render_gaussians


@dataclass(frozen=True)
class FitConfig:
    num_gaussians: int = 512
    iterations: int = 100
    extent: float = 1.0
    init_scale: float = 0.06
    init_opacity: float = 0.1
    lr_means: float = 0.01
    lr_scales: float = 0.02
    lr_rotations: float = 0.01
    lr_opacities: float = 0.05
    lr_colors: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.num_gaussians < 1 or self.iterations < 0:
            raise ValueError(f"num_gaussians must be >= 1 and iterations >= 0, got {self.num_gaussians}, {self.iterations}")
        if not 0 < self.init_opacity < 1:
            raise ValueError(f"init_opacity must lie in (0, 1), got {self.init_opacity}")


def _initial_parameters(config: FitConfig, dtype) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(config.seed)
    n = config.num_gaussians
    return {
        "means": (torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * config.extent,
        "scales": torch.full((n, 3), math.log(config.init_scale), dtype=dtype),
        "rotations": torch.tensor([1.0, 0, 0, 0], dtype=dtype).repeat(n, 1),
        "opacities": torch.full((n,), math.log(config.init_opacity / (1 - config.init_opacity)), dtype=dtype),
        "colors": torch.full((n, 3), 0.5, dtype=dtype),
    }


def activate(params: dict[str, Tensor]) -> Gaussians:
    """Unconstrained parameters (N, ·) -> Gaussians with batch 1."""
    return Gaussians(means=params["means"][None], scales=params["scales"].exp()[None],
                     rotations=F.normalize(params["rotations"], dim=-1)[None],
                     opacities=torch.sigmoid(params["opacities"])[None], colors=params["colors"][None])


def fit_gaussians(images: Tensor, intrinsics: Tensor, extrinsics: Tensor, *, config: FitConfig = FitConfig(),
                  raster: RasterConfig = RasterConfig()) -> tuple[Gaussians, list[float]]:
    """images (V, 3, H, W), intrinsics (V, 3, 3), extrinsics (V, 4, 4) -> the fitted Gaussians (batch 1)
    and the loss of every iteration."""
    h, w = images.shape[-2:]
    params = {k: v.requires_grad_() for k, v in _initial_parameters(config, images.dtype).items()}
    rates = {"means": config.lr_means, "scales": config.lr_scales, "rotations": config.lr_rotations,
             "opacities": config.lr_opacities, "colors": config.lr_colors}
    optimiser = torch.optim.Adam([{"params": [params[k]], "lr": rates[k]} for k in params], eps=1e-15)
    losses = []
    for _ in range(config.iterations):
        out = render_gaussians(activate(params), extrinsics[None], intrinsics[None], height=h, width=w, config=raster)
        loss = F.mse_loss(out.color[0], images)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        return activate({k: v.detach() for k, v in params.items()}), losses
