"""Plücker ray maps: per-pixel 6-D rays ``(d, o × d)`` from intrinsics and world-to-camera extrinsics."""

from __future__ import annotations

import torch
from torch import Tensor

from .conventions import full_precision, invert_se3
from .rope import check_choice

ORDERS = ("dm", "md")  # (direction, moment) as in SEVA; (moment, direction) as in LVSM


def pixel_grid(height: int, width: int, *, offset: float = 0.5, dtype=torch.float32, device=None) -> Tensor:
    """Pixel coordinates ``(height, width, 2)`` as ``(u, v) = (column + offset, row + offset)``."""
    rows = torch.arange(height, dtype=dtype, device=device) + offset
    cols = torch.arange(width, dtype=dtype, device=device) + offset
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([u, v], dim=-1)


def relative_to_first(extrinsics: Tensor) -> Tensor:
    """``(..., V, 4, 4)`` world-to-camera → the same cameras in the frame of camera 0: ``E_i·E_0⁻¹``."""
    return extrinsics @ invert_se3(extrinsics[..., :1, :, :])


def plucker_rays(
    intrinsics: Tensor,
    extrinsics: Tensor,
    height: int,
    width: int,
    *,
    order: str = "dm",
    relative: bool = False,
    pixel_offset: float = 0.5,
) -> Tensor:
    """Plücker coordinates of every pixel's ray, ``(..., height, width, 6)``.

    intrinsics: ``(..., 3, 3)`` in pixels of the ``(height, width)`` grid (latent or image);
    extrinsics: ``(..., 4, 4)`` world-to-camera, OpenCV axes. The direction ``d = Rᵀ K⁻¹ (u, v, 1)``
    is unit length, ``o = −Rᵀt`` is the camera centre and the moment is ``o × d``. ``relative``
    expresses the cameras in the frame of the first view (axis ``-3`` of the extrinsics).
    Computed in float32 (float64 for float64 inputs), also under autocast.
    """
    check_choice("order", order, ORDERS)
    dtype = torch.promote_types(torch.promote_types(intrinsics.dtype, extrinsics.dtype), torch.float32)
    intrinsics, extrinsics = intrinsics.to(dtype), extrinsics.to(dtype)
    with full_precision(extrinsics):  # float32 under a model's autocast too
        if relative:
            extrinsics = relative_to_first(extrinsics)
        c2w = invert_se3(extrinsics)
        uv1 = torch.nn.functional.pad(pixel_grid(height, width, offset=pixel_offset, dtype=dtype,
                                                 device=intrinsics.device), (0, 1), value=1.0)
        cam_dirs = uv1 @ torch.linalg.inv(intrinsics)[..., None, :, :].transpose(-1, -2)  # (..., H, W, 3)
        dirs = cam_dirs @ c2w[..., None, :3, :3].transpose(-1, -2)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = c2w[..., None, None, :3, 3].expand_as(dirs)
        moments = torch.linalg.cross(origins, dirs, dim=-1)
    parts = [dirs, moments] if order == "dm" else [moments, dirs]
    return torch.cat(parts, dim=-1)


def convert_plucker_order(rays: Tensor, *, source: str, target: str) -> Tensor:
    """Reorder ``(..., 6)`` Plücker coordinates between ``"dm"`` (d, o × d) and ``"md"`` (o × d, d)."""
    check_choice("source", source, ORDERS)
    check_choice("target", target, ORDERS)
    if source == target:
        return rays
    return torch.cat([rays[..., 3:], rays[..., :3]], dim=-1)
