"""VGGT's DPT dense head (Ranftl et al. 2021, as facebookresearch/vggt `heads/dpt_head.py` arranges
it), written here from its description, with the same parameter names and shapes so `depth_head.*`
(and `point_head.*`) of a VGGT checkpoint load into it.

Four token layers (B', P, C) -> LayerNorm -> 1×1 conv to `out_channels[i]` -> + sinusoidal
position embedding (0.1 ×) -> resample to 4×, 2×, 1×, ½× the patch grid (transposed convs, identity,
strided conv) -> 3×3 conv to `features` -> top-down fusion (residual conv units whose skip adds
ReLU(x), as VGGT's in-place ReLU makes it; bilinear upsampling with aligned corners, 1×1 out conv)
-> 3×3 conv to features/2 -> bilinear resize to the image -> + position embedding -> 3×3 conv (32)
-> ReLU -> 1×1 conv to `output_dim`.

Keys: norm, projects.{0..3}, resize_layers.{0,1,3}, scratch.layer{1..4}_rn (no bias),
scratch.refinenet{1..4}.{out_conv,resConfUnit1 (not in refinenet4),resConfUnit2}.conv{1,2},
scratch.output_conv1, scratch.output_conv2.{0,2}.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from seqrender.recon.dpt import ResidualConvUnit
from seqrender.recon.gaussian_head import DepthPrediction

POS_EMBED_RATIO = 0.1
POS_EMBED_OMEGA = 100.0


def view_plane_uv(width: int, height: int, *, aspect: float, dtype=torch.float32, device=None) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (u, v) on the view plane, spanning ±aspect/√(1+aspect²)
    horizontally and ±1/√(1+aspect²) vertically (the image diagonal has length 2)."""
    diag = math.sqrt(1.0 + aspect * aspect)
    half = lambda span, n: span * (n - 1) / n
    u = torch.linspace(-half(aspect / diag, width), half(aspect / diag, width), width, dtype=dtype, device=device)
    v = torch.linspace(-half(1 / diag, height), half(1 / diag, height), height, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)


def sincos_embedding(uv: Tensor, channels: int, *, omega: float = POS_EMBED_OMEGA) -> Tensor:
    """uv (H, W, 2) -> (channels, H, W): for u then v, [sin(x·ω_k), cos(x·ω_k)] with
    ω_k = omega^(−k / (channels/4)), k < channels/4."""
    quarter = channels // 4
    freqs = omega ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    parts = []
    for coord in uv.unbind(-1):
        angles = coord.double()[..., None] * freqs
        parts += [angles.sin(), angles.cos()]
    return rearrange(torch.cat(parts, dim=-1).to(uv.dtype), "h w c -> c h w")


def add_position(x: Tensor, aspect: float) -> Tensor:
    """x (B, C, h, w) + 0.1 × the view-plane sinusoidal embedding of its grid."""
    uv = view_plane_uv(x.shape[-1], x.shape[-2], aspect=aspect, dtype=x.dtype, device=x.device)
    return x + POS_EMBED_RATIO * sincos_embedding(uv, x.shape[1])[None]


class VGGTResidualConvUnit(ResidualConvUnit):
    """VGGT's residual unit: its activation is a shared `nn.ReLU(inplace=True)`, so the first ReLU
    rectifies the input in place and the skip adds ReLU(x), not x:
    relu(x) + conv2(relu(conv1(relu(x)))). Same keys (conv1, conv2) as `ResidualConvUnit`."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FusionBlock(nn.Module):
    """out_conv(upsample(rcu2(x + rcu1(skip)))) with bilinear, corner-aligned upsampling to `size`
    (2× when None)."""

    def __init__(self, features: int, *, has_skip: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_skip:
            self.resConfUnit1 = VGGTResidualConvUnit(features)
        self.resConfUnit2 = VGGTResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, *, size: tuple[int, int] | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (2 * x.shape[-2], 2 * x.shape[-1])
        return self.out_conv(F.interpolate(x, size=size, mode="bilinear", align_corners=True))


def _resampler(index: int, channels: int) -> nn.Module:
    """The patch grid resampled to 4×, 2×, 1×, ½× for token layers 0..3."""
    if index < 2:
        factor = 4 if index == 0 else 2
        return nn.ConvTranspose2d(channels, channels, factor, stride=factor)
    if index == 2:
        return nn.Identity()
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


class VGGTDPTHead(nn.Module):
    """tokens: 4 × (B', P, dim_in) patch tokens (special tokens removed), image (B', 3, H, W) ->
    raw maps (B', output_dim, H, W). H, W multiples of patch_size. VGGT-1B: dim_in 2048,
    features 256, out_channels (256, 512, 1024, 1024), patch 14."""

    def __init__(self, dim_in: int, *, output_dim: int = 2, patch_size: int = 14, features: int = 256,
                 out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)):
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f"out_channels must have 4 entries (one per token layer), got {out_channels}")
        self.patch_size = patch_size
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList(_resampler(i, c) for i, c in enumerate(out_channels))
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features, has_skip=i < 4))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(32, output_dim, 1))

    def forward(self, tokens: list[Tensor], image: Tensor) -> Tensor:
        if len(tokens) != 4:
            raise ValueError(f"expected 4 token layers, got {len(tokens)}")
        h, w = image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size
        aspect = image.shape[-1] / image.shape[-2]
        maps = []
        for i, tok in enumerate(tokens):
            x = rearrange(self.norm(tok), "b (h w) c -> b c h w", h=h, w=w)
            x = self.resize_layers[i](add_position(self.projects[i](x), aspect))
            maps.append(getattr(self.scratch, f"layer{i + 1}_rn")(x))
        s = self.scratch
        x = s.refinenet4(maps[3], size=maps[2].shape[-2:])
        x = s.refinenet3(x, maps[2], size=maps[1].shape[-2:])
        x = s.refinenet2(x, maps[1], size=maps[0].shape[-2:])
        x = s.output_conv1(s.refinenet1(x, maps[0]))
        x = F.interpolate(x, size=(h * self.patch_size, w * self.patch_size), mode="bilinear", align_corners=True)
        return s.output_conv2(add_position(x, aspect))


class VGGTDepthHead(VGGTDPTHead):
    """VGGT's `depth_head`: a VGGTDPTHead with 2 outputs (same keys), depth = exp(x₀),
    confidence = 1 + exp(x₁). tokens: 4 × (B', P, dim_in), image (B', 3, H, W) -> DepthPrediction."""

    def __init__(self, dim_in: int, **kwargs):
        super().__init__(dim_in, output_dim=2, **kwargs)

    def forward(self, tokens: list[Tensor], image: Tensor) -> DepthPrediction:
        out = super().forward(tokens, image)
        return DepthPrediction(depth=out[:, 0].exp(), confidence=1 + out[:, 1].exp())
