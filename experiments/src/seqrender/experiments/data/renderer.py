"""A small vectorised ray caster for procedural scenes of analytic primitives (float32, CPU).

The rays of all pixels of all views are intersected with one primitive at a time (only the rays
that meet its bounding sphere); the nearest hit wins (depth test across primitives) and is shaded
with ambient + Lambert light from one fixed world direction.
Not differentiable by design: it only makes data.
"""

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from einops import reduce
from torch import Tensor

from seqrender.experiments.data.cameras import pixel_rays
from seqrender.experiments.data.primitives import Primitive


@dataclass(frozen=True)
class Shading:
    ambient: float = 0.45
    diffuse: float = 0.55
    light_direction: tuple[float, float, float] = (0.4, 0.25, 1.0)  # towards the light, world


@dataclass
class RenderOutput:
    """rgb: (V, 3, H, W) colour premultiplied by alpha (black where empty); alpha: (V, H, W)
    coverage in [0, 1]; depth: (V, H, W) camera-z depth (OpenCV z) averaged over the covered
    sub-pixel samples, 0 where nothing is hit."""

    rgb: Tensor
    alpha: Tensor
    depth: Tensor

    def composite(self, background: Sequence[float]) -> Tensor:
        """(V, 3, H, W) image over a plain `background` colour (3 floats in [0, 1])."""
        bg = torch.tensor(background, dtype=self.rgb.dtype)[None, :, None, None]
        return self.rgb + (1.0 - self.alpha[:, None]) * bg

    def straight_rgb(self) -> Tensor:
        """(V, 3, H, W) un-premultiplied colour (what an RGBA PNG stores), 0 where empty."""
        return self.rgb / self.alpha[:, None].clamp_min(1e-8)


def render(primitives: Sequence[Primitive], intrinsics: Tensor, extrinsics: Tensor, *,
           height: int, width: int, supersample: int = 1, shading: Shading = Shading(),
           texture: Callable[[Tensor], Tensor] | None = None) -> RenderOutput:
    """Render `primitives` from V cameras.

    intrinsics: (V, 3, 3) pixel units of the (height, width) image; extrinsics: (V, 4, 4)
    OpenCV world-to-camera. `supersample` s casts s×s rays per pixel and averages them (anti-aliased
    colour and fractional alpha). `texture` (e.g. data.texture.SolidTexture) maps hit points (N, 3)
    to (N,) factors multiplying the colour; None: flat colours.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample}")
    if not primitives:
        raise ValueError("primitives must hold at least one primitive")
    origins, dirs, z_per_distance = pixel_rays(intrinsics, extrinsics, height=height, width=width,
                                               supersample=supersample)
    shape = dirs.shape[:3]
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    distance, normal, colour = _nearest_hit(primitives, origins, dirs)
    covered = torch.isfinite(distance)
    if texture is not None:
        hits = covered.nonzero().squeeze(1)
        colour[hits] = colour[hits] * texture(origins[hits] + distance[hits, None] * dirs[hits])[:, None]
    light = torch.nn.functional.normalize(torch.tensor(shading.light_direction), dim=0)
    lambert = (normal @ light).clamp_min(0.0)
    shaded = colour * (shading.ambient + shading.diffuse * lambert)[:, None] * covered[:, None]
    depth = torch.where(covered, distance, 0.0).reshape(shape) * z_per_distance
    return _downsample(shaded.reshape(*shape, 3), covered.reshape(shape).float(), depth, supersample)


def _nearest_hit(primitives: Sequence[Primitive], origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Depth test: (N, 3) rays -> distance (N,), normal (N, 3), colour (N, 3) of the nearest hit.
    Each primitive is only intersected with the rays that meet its bounding sphere."""
    distance = torch.full(origins.shape[:1], math.inf)
    normal, colour = torch.zeros_like(origins), torch.zeros_like(origins)
    for primitive in primitives:
        rays = _bounding_sphere_rays(primitive, origins, dirs)
        hit = primitive.intersect(origins[rays], dirs[rays])
        closer = hit.distance < distance[rays]
        rays = rays[closer]
        distance[rays], normal[rays], colour[rays] = hit.distance[closer], hit.normal[closer], hit.colour[closer]
    return distance, normal, colour


def _bounding_sphere_rays(primitive: Primitive, origins: Tensor, dirs: Tensor) -> Tensor:
    """Indices (M,) of the rays (N, 3) whose forward half meets the primitive's bounding sphere."""
    oc = origins - primitive.centre
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - primitive.bounding_radius() ** 2)
    return ((disc >= 0) & (b < disc.clamp_min(0.0).sqrt())).nonzero().squeeze(1)


def _downsample(rgb: Tensor, alpha: Tensor, depth: Tensor, s: int) -> RenderOutput:
    """Average s×s sub-pixel samples: rgb (V, h, w, 3), alpha/depth (V, h, w) -> RenderOutput."""
    rgb = reduce(rgb, "v (h s1) (w s2) c -> v c h w", "mean", s1=s, s2=s)
    coverage = reduce(alpha, "v (h s1) (w s2) -> v h w", "mean", s1=s, s2=s)
    depth = reduce(depth * alpha, "v (h s1) (w s2) -> v h w", "mean", s1=s, s2=s) / coverage.clamp_min(1e-8)
    return RenderOutput(rgb=rgb.contiguous(), alpha=coverage, depth=torch.where(coverage > 0, depth, 0.0))
