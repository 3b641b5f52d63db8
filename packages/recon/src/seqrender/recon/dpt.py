"""DPT-lite dense head: reassemble patch tokens from several backbone layers into a feature map,
fuse them top-down with residual conv units, upsample to pixels and decode with the image as skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class DPTHead(nn.Module):
    """tokens: list of L tensors (B', P, in_dim) with P = (H/p)(W/p) patch tokens (special tokens
    removed), image (B', 3, H, W) -> (B', out_channels, H, W). The last 1×1 conv can start at zero."""

    def __init__(self, in_dim: int, out_channels: int, *, num_layers: int, patch_size: int,
                 features: int = 64, zero_init_output: bool = False):
        super().__init__()
        self.patch_size = patch_size
        self.norm = nn.LayerNorm(in_dim)
        self.projects = nn.ModuleList(nn.Linear(in_dim, features) for _ in range(num_layers))
        self.fuse = nn.ModuleList(ResidualConvUnit(features) for _ in range(num_layers))
        self.decode = nn.Sequential(
            nn.Conv2d(features + 3, features, 3, padding=1), nn.ReLU(),
            nn.Conv2d(features, features, 3, padding=1), nn.ReLU(),
        )
        self.output = nn.Conv2d(features, out_channels, 1)
        if zero_init_output:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def forward(self, tokens: list[Tensor], image: Tensor) -> Tensor:
        if len(tokens) != len(self.projects):
            raise ValueError(f"expected {len(self.projects)} token layers, got {len(tokens)}")
        h, w = image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size
        x = None
        for tok, project, fuse in zip(reversed(tokens), reversed(self.projects), reversed(self.fuse)):
            feat = rearrange(project(self.norm(tok)), "b (h w) c -> b c h w", h=h, w=w)
            x = fuse(feat if x is None else x + feat)
        x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.output(self.decode(torch.cat([x, image], dim=1)))
