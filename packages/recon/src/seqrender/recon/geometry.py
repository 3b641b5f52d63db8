"""Pinhole camera geometry: OpenCV world-to-camera extrinsics, pixel intrinsics, pixel centres at +0.5."""

from __future__ import annotations

import torch
from torch import Tensor


def world_to_camera(points: Tensor, extrinsics: Tensor) -> Tensor:
    """points (..., N, 3), extrinsics (..., 4, 4) world-to-camera -> camera coordinates (..., N, 3)."""
    return points @ extrinsics[..., :3, :3].transpose(-1, -2) + extrinsics[..., None, :3, 3]


def pixel_centres(height: int, width: int, *, dtype=torch.float32, device=None) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (u, v) = (col + 0.5, row + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def unproject_depth(depth: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> Tensor:
    """Lift each pixel centre to the world point at its camera depth (z, not ray length).

    depth (..., H, W), intrinsics (..., 3, 3), extrinsics (..., 4, 4) -> world points (..., H, W, 3).
    """
    h, w = depth.shape[-2:]
    uv = pixel_centres(h, w, dtype=depth.dtype, device=depth.device)
    uv1 = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)  # (H, W, 3)
    rays = uv1 @ torch.linalg.inv(intrinsics)[..., None, :, :].transpose(-1, -2)  # (..., H, W, 3), z = 1
    cam = rays * depth[..., None]
    rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    return (cam - trans[..., None, None, :]) @ rot[..., None, :, :]


def project_points(points: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """points (..., N, 3) world -> pixel coordinates (..., N, 2) and camera depth (..., N)."""
    cam = world_to_camera(points, extrinsics)
    uvw = cam @ intrinsics.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:], cam[..., 2]
