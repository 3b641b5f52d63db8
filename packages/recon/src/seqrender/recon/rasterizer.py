"""Differentiable 3D Gaussian splatting rasteriser in pure torch (Kerbl et al. 2023), for small images.

Gaussians are projected with world-to-camera OpenCV extrinsics and pixel intrinsics (pixel centres at
`+0.5`), their 2-D covariance is the EWA linearisation `J W Σ Wᵀ Jᵀ (+ blur·I)`, they are sorted by
camera depth and alpha-composited front to back. Pixels are processed in bands of rows; each band
only sees the Gaussians whose support (where `α ≥ alpha_min`) can reach it, so culling is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from seqrender.recon.geometry import pixel_centres, world_to_camera


@dataclass(frozen=True)
class RasterConfig:
    """Rasteriser options.

    near: Gaussians with camera depth below are dropped. blur: isotropic pixel variance added to
    every 2-D covariance (3DGS' 0.3 low-pass). alpha_min / alpha_max: per-Gaussian alpha below
    alpha_min is skipped, above is clamped (3DGS: 1/255, 0.99). t_min: early cut-off, a Gaussian
    is composited only while the transmittance after it stays ≥ t_min (None = never stop).
    band_rows: image rows per band (smaller bands cull more Gaussians, at more per-band overhead).
    chunk_elements: bound on pixels × Gaussians evaluated at once (memory). background: RGB behind.
    fov_clamp: x/z and y/z in the projection Jacobian are clamped to this multiple of the half field
    of view (3DGS and gsplat: 1.3; margin (fov_clamp − 1)·tan(fov/2) beyond each image edge, as
    gsplat does for an off-centre principal point); None = no clamp.
    """

    near: float = 0.01
    blur: float = 0.3
    alpha_min: float = 1.0 / 255.0
    alpha_max: float = 0.99
    t_min: float | None = 1e-4
    band_rows: int = 8
    chunk_elements: int = 1 << 22
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov_clamp: float | None = 1.3

    def __post_init__(self):
        if self.fov_clamp is not None and self.fov_clamp < 1.0:
            raise ValueError(f"fov_clamp must be >= 1 or None, got {self.fov_clamp}")
        if not 0.0 <= self.alpha_min < self.alpha_max <= 1.0:
            raise ValueError(f"need 0 <= alpha_min < alpha_max <= 1, got {self.alpha_min}, {self.alpha_max}")
        if self.chunk_elements < 1 or self.band_rows < 1:
            raise ValueError(f"chunk_elements and band_rows must be >= 1, got {self.chunk_elements}, {self.band_rows}")


@dataclass
class Gaussians:
    """A batch of 3-D Gaussians.

    means (B, N, 3) world positions; scales (B, N, 3) positive std-devs along the rotated axes;
    rotations (B, N, 4) quaternions (w, x, y, z), normalised here; opacities (B, N) in [0, 1];
    colors (B, N, 3).
    """

    means: Tensor
    scales: Tensor
    rotations: Tensor
    opacities: Tensor
    colors: Tensor


@dataclass
class Render:
    """Rendered views: color (..., 3, H, W) over the background, alpha (..., 1, H, W) accumulated
    opacity, depth (..., 1, H, W) alpha-weighted camera depth (divide by alpha for the mean)."""

    color: Tensor
    alpha: Tensor
    depth: Tensor


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any norm -> (..., 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return rearrange(torch.stack(rows, dim=-1), "... (i j) -> ... i j", i=3)


def covariance_3d(scales: Tensor, rotations: Tensor) -> Tensor:
    """Σ = R S Sᵀ Rᵀ. scales (..., 3), rotations (..., 4) -> (..., 3, 3)."""
    m = quaternion_to_matrix(rotations) * scales.unsqueeze(-2)
    return m @ m.transpose(-1, -2)


def clamp_to_fov(x: Tensor, z: Tensor, focal: Tensor, centre: Tensor, size: int, factor: float) -> Tensor:
    """x with x/z clamped to [−(c/f + m), (size − c)/f + m], m = (factor − 1)·size/(2f) (3DGS/gsplat)."""
    margin = (factor - 1.0) * 0.5 * size / focal
    return z * (x / z).clamp(-(centre / focal + margin), (size - centre) / focal + margin)


def project_gaussians(
    means: Tensor, cov3d: Tensor, extrinsics: Tensor, intrinsics: Tensor, *, blur: float = 0.3,
    image_size: tuple[int, int] | None = None, fov_clamp: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """EWA projection into one camera.

    means (N, 3), cov3d (N, 3, 3), extrinsics (4, 4) world-to-camera, intrinsics (3, 3) ->
    centres (N, 2) in pixels, cov2d (N, 2, 2), depth (N,) camera z. With fov_clamp and
    image_size (H, W), the Jacobian is evaluated at x/z, y/z clamped to fov_clamp × the half
    field of view (clamp_to_fov); the centres are not clamped.
    """
    rot = extrinsics[:3, :3]
    cam = world_to_camera(means, extrinsics)
    x, y, z = cam.unbind(-1)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    zs = z.clamp_min(1e-6)
    centres = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)
    if fov_clamp is not None and image_size is not None:
        x = clamp_to_fov(x, zs, fx, cx, image_size[1], fov_clamp)
        y = clamp_to_fov(y, zs, fy, cy, image_size[0], fov_clamp)
    zero = torch.zeros_like(zs)
    jac = torch.stack(
        [fx / zs, zero, -fx * x / zs**2, zero, fy / zs, -fy * y / zs**2], dim=-1
    ).view(-1, 2, 3)
    t = jac @ rot
    cov2d = t @ cov3d @ t.transpose(-1, -2)
    cov2d = cov2d + blur * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    return centres, cov2d, z


def _composite(alpha: Tensor, feats: Tensor, t_min: float | None) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing. alpha (P, N) sorted near→far, feats (N, F) -> (P, F), (P,)."""
    trans_after = torch.cumprod(1 - alpha, dim=-1)
    trans_before = torch.cat([torch.ones_like(alpha[:, :1]), trans_after[:, :-1]], dim=-1)
    weights = alpha * trans_before
    if t_min is not None:
        weights = weights * (trans_after >= t_min).to(weights.dtype)
    return weights @ feats, weights.sum(dim=-1)


def _support_radius(opacities: Tensor, cov2d: Tensor, alpha_min: float) -> Tensor:
    """(N,) half-extent in pixels beyond which `opacity·exp(-½ dᵀΣ⁻¹d) < alpha_min` on every axis."""
    if alpha_min <= 0:
        return torch.full_like(opacities, math.inf)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    lam_max = 0.5 * (a + c) + torch.sqrt((0.25 * (a - c) ** 2 + b * b).clamp_min(0))
    ratio = torch.log((opacities / alpha_min).clamp_min(1.0))
    return torch.sqrt(2 * ratio * lam_max) + 1e-3


def rasterize(
    means: Tensor,
    scales: Tensor,
    rotations: Tensor,
    opacities: Tensor,
    colors: Tensor,
    extrinsics: Tensor,
    intrinsics: Tensor,
    *,
    height: int,
    width: int,
    config: RasterConfig = RasterConfig(),
) -> Render:
    """Render N Gaussians into one camera.

    means (N, 3), scales (N, 3), rotations (N, 4), opacities (N,), colors (N, C),
    extrinsics (4, 4), intrinsics (3, 3) -> Render with color (C, H, W), alpha / depth (1, H, W).
    """
    centres, cov2d, depth = project_gaussians(
        means, covariance_3d(scales, rotations), extrinsics, intrinsics, blur=config.blur,
        image_size=(height, width), fov_clamp=config.fov_clamp,
    )
    keep = (depth > config.near).nonzero().squeeze(-1)
    order = keep[torch.argsort(depth[keep])]
    centres, cov2d, depth = centres[order], cov2d[order], depth[order]
    opac, feats = opacities[order], torch.cat([colors[order], depth[:, None]], dim=-1)
    conic = torch.linalg.inv(cov2d)
    radius = _support_radius(opac.detach(), cov2d.detach(), config.alpha_min)

    dtype, device = means.dtype, means.device
    rows = max(1, min(config.band_rows, config.chunk_elements // (width * max(1, len(order)))))
    out, acc = [], []
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        hit = ((centres[:, 1].detach() + radius >= r0) & (centres[:, 1].detach() - radius <= r1)).nonzero().squeeze(-1)
        pix = pixel_centres(r1 - r0, width, dtype=dtype, device=device).reshape(-1, 2)
        pix = pix + pix.new_tensor([0.0, r0])
        f, a = _band(pix, centres[hit], conic[hit], opac[hit], feats[hit], config)
        out.append(f)
        acc.append(a)
    feats_img = rearrange(torch.cat(out), "(h w) f -> f h w", h=height)
    alpha = rearrange(torch.cat(acc), "(h w) -> 1 h w", h=height)
    bg = torch.tensor(config.background, dtype=dtype, device=device)[: colors.shape[-1], None, None]
    return Render(color=feats_img[:-1] + (1 - alpha) * bg, alpha=alpha, depth=feats_img[-1:])


def _band(pix: Tensor, centres: Tensor, conic: Tensor, opac: Tensor, feats: Tensor, config: RasterConfig):
    """pix (P, 2), centres (N, 2), conic (N, 2, 2), opac (N,), feats (N, F) -> (P, F), (P,).

    log α = log o − ½ (p − μ)ᵀ Σ⁻¹ (p − μ) is a quadratic polynomial in the pixel position, so all
    P × N values come from one (P, 6) @ (6, N) product (coordinates centred on the band to keep
    float32 cancellation small).
    """
    if len(centres) == 0:
        return pix.new_zeros(len(pix), feats.shape[-1]), pix.new_zeros(len(pix))
    origin = pix.mean(dim=0)
    px, py = (pix - origin).unbind(-1)
    mx, my = (centres - origin).unbind(-1)
    a, b, c = conic[:, 0, 0], conic[:, 0, 1], conic[:, 1, 1]
    lin_x, lin_y = a * mx + b * my, b * mx + c * my
    const = opac.clamp_min(1e-30).log() - 0.5 * (mx * lin_x + my * lin_y)
    phi = torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], dim=-1)
    psi = torch.stack([-0.5 * a, -b, -0.5 * c, lin_x, lin_y, const])
    alpha = torch.exp(phi @ psi).clamp_max(config.alpha_max)
    if config.alpha_min > 0:
        alpha = torch.where(alpha >= config.alpha_min, alpha, 0.0)
    return _composite(alpha, feats, config.t_min)


def render_gaussians(
    gaussians: Gaussians,
    extrinsics: Tensor,
    intrinsics: Tensor,
    *,
    height: int,
    width: int,
    config: RasterConfig = RasterConfig(),
) -> Render:
    """Render each batch element's Gaussians into its V cameras.

    gaussians with batch B; extrinsics (B, V, 4, 4), intrinsics (B, V, 3, 3) ->
    Render with color (B, V, C, H, W), alpha / depth (B, V, 1, H, W).
    """
    if extrinsics.shape[:2] != intrinsics.shape[:2] or extrinsics.shape[0] != gaussians.means.shape[0]:
        raise ValueError(
            f"extrinsics (B, V, 4, 4) and intrinsics (B, V, 3, 3) must share B, V with the Gaussians' B, got "
            f"{tuple(extrinsics.shape)}, {tuple(intrinsics.shape)}, means {tuple(gaussians.means.shape)}"
        )
    views = []
    for b in range(extrinsics.shape[0]):
        g = [gaussians.means[b], gaussians.scales[b], gaussians.rotations[b], gaussians.opacities[b], gaussians.colors[b]]
        views.append(
            [rasterize(*g, e, k, height=height, width=width, config=config) for e, k in zip(extrinsics[b], intrinsics[b])]
        )
    stack = lambda name: torch.stack([torch.stack([getattr(r, name) for r in row]) for row in views])
    return Render(color=stack("color"), alpha=stack("alpha"), depth=stack("depth"))
