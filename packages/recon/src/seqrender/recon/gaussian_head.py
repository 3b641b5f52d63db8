"""Per-pixel depth and Gaussian heads (4Real-Video-V2 §3.2, App. C; Splatt3r-style offsets).

Depth head: DPT-lite → depth = exp(x₀), confidence = 1 + exp(x₁) (VGGT's activations).
Gaussian head: DPT-lite → 3-D offset (3), opacity (1), scales (3), rotation quaternion (4), colour
residual (3), its output layer zero-initialised. Centres are the depth unprojected with the
cameras plus the offset; colour is the pixel colour plus the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from seqrender.recon.dpt import DPTHead
from seqrender.recon.geometry import unproject_depth
from seqrender.recon.rasterizer import Gaussians

GAUSSIAN_CHANNELS = {"offset": 3, "opacity": 1, "scales": 3, "rotation": 4, "color": 3}


@dataclass
class DepthPrediction:
    """depth (B', H, W) camera z > 0; confidence (B', H, W) > 1."""

    depth: Tensor
    confidence: Tensor


class DepthHead(nn.Module):
    """tokens: L × (B', P, in_dim), image (B', 3, H, W) -> DepthPrediction."""

    def __init__(self, in_dim: int, *, num_layers: int, patch_size: int, features: int = 64):
        super().__init__()
        self.dpt = DPTHead(in_dim, 2, num_layers=num_layers, patch_size=patch_size, features=features)

    def forward(self, tokens: list[Tensor], image: Tensor) -> DepthPrediction:
        out = self.dpt(tokens, image)
        return DepthPrediction(depth=out[:, 0].exp(), confidence=1 + out[:, 1].exp())


class GaussianHead(nn.Module):
    """tokens: L × (B', P, in_dim), image (B', 3, H, W) -> raw maps (B', 14, H, W), zero at init."""

    def __init__(self, in_dim: int, *, num_layers: int, patch_size: int, features: int = 64):
        super().__init__()
        self.dpt = DPTHead(in_dim, sum(GAUSSIAN_CHANNELS.values()), num_layers=num_layers,
                           patch_size=patch_size, features=features, zero_init_output=True)

    def forward(self, tokens: list[Tensor], image: Tensor) -> Tensor:
        return self.dpt(tokens, image)


def gaussians_from_maps(
    raw: Tensor, depth: Tensor, image: Tensor, intrinsics: Tensor, extrinsics: Tensor
) -> Gaussians:
    """Pixel-aligned Gaussians of S views.

    raw (B, S, 14, H, W) Gaussian-head output, depth (B, S, H, W), image (B, S, 3, H, W),
    intrinsics (B, S, 3, 3), extrinsics (B, S, 4, 4) -> Gaussians with N = S·H·W.
    Scales are in units of the pixel footprint `depth / f`: softplus(raw)·depth/f (raw 0 → 0.69 px);
    rotations are (1, 0, 0, 0) + raw, normalised; opacity sigmoid(raw).
    """
    parts = dict(zip(GAUSSIAN_CHANNELS, raw.split(list(GAUSSIAN_CHANNELS.values()), dim=2)))
    flat = lambda x: rearrange(x, "b s c h w -> b (s h w) c")
    centres = unproject_depth(depth, intrinsics, extrinsics)  # (B, S, H, W, 3)
    focal = 0.5 * (intrinsics[..., 0, 0] + intrinsics[..., 1, 1])  # (B, S)
    footprint = (depth / focal[..., None, None]).unsqueeze(2)  # (B, S, 1, H, W)
    identity = raw.new_tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 4, 1, 1)
    return Gaussians(
        means=rearrange(centres, "b s h w c -> b (s h w) c") + flat(parts["offset"]),
        scales=flat(F.softplus(parts["scales"]) * footprint),
        rotations=F.normalize(flat(parts["rotation"] + identity), dim=-1),
        opacities=flat(torch.sigmoid(parts["opacity"]))[..., 0],
        colors=flat(image + parts["color"]),
    )
