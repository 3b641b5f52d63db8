"""Camera helpers in the project convention (SPEC §4): world-to-camera extrinsics, OpenCV axes
(x right, y down, z forward), pixel-unit intrinsics with pixel (row i, column j) centred at
(u, v) = (j + 0.5, i + 0.5).

The OpenGL <-> OpenCV conversions and `intrinsics_from_fov` live in `seqrender.posenc.conventions`.
"""

import math

import torch
from torch import Tensor


def fov_x_from_intrinsics(intrinsics: Tensor, *, width: int) -> float:
    """(3, 3) pixel intrinsics -> horizontal field of view in radians."""
    return 2.0 * math.atan(0.5 * width / float(intrinsics[0, 0]))


def scale_intrinsics(intrinsics: Tensor, *, scale_x: float, scale_y: float) -> Tensor:
    """(..., 3, 3) intrinsics of an image resized by (scale_x, scale_y). With pixel centres at
    +0.5 the whole first row scales by scale_x and the second by scale_y."""
    scale = torch.tensor([scale_x, scale_y, 1.0], dtype=intrinsics.dtype).unsqueeze(-1)
    return intrinsics * scale


def look_at_w2c(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV world-to-camera extrinsics of cameras at `eye` looking at `target`.

    eye, target: (V, 3); up: (3,) world up (the image's -y points towards it) -> (V, 4, 4).
    """
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up.expand_as(forward), dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    rotation = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coords
    w2c = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype)
    w2c[:, :3, :3] = rotation
    w2c[:, :3, 3] = -(rotation @ eye.unsqueeze(-1)).squeeze(-1)
    w2c[:, 3, 3] = 1.0
    return w2c


def pixel_rays(intrinsics: Tensor, extrinsics: Tensor, *, height: int, width: int,
               supersample: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """World-space rays through `supersample`² evenly spread points of every pixel.

    intrinsics: (V, 3, 3) for the (height, width) grid; extrinsics: (V, 4, 4) world-to-camera.
    Returns origins (V, h, w, 3), unit directions (V, h, w, 3) and `z_per_distance` (V, h, w),
    the camera-z depth per unit distance along each ray; h = height·s, w = width·s.
    """
    s = supersample
    offsets_v = (torch.arange(height * s, dtype=torch.float32) + 0.5) / s
    offsets_u = (torch.arange(width * s, dtype=torch.float32) + 0.5) / s
    v, u = torch.meshgrid(offsets_v, offsets_u, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (h, w, 3)
    k_inv = torch.linalg.inv(intrinsics.to(torch.float64)).to(torch.float32)
    dirs_cam = torch.einsum("vij,hwj->vhwi", k_inv, pixels)
    dirs_cam = dirs_cam * torch.rsqrt((dirs_cam * dirs_cam).sum(-1, keepdim=True))  # F.normalize: 10x slower
    rotation = extrinsics[:, :3, :3].to(torch.float32)
    dirs_world = torch.einsum("vji,vhwj->vhwi", rotation, dirs_cam)  # R^T d
    centres = -torch.einsum("vji,vj->vi", rotation, extrinsics[:, :3, 3].to(torch.float32))
    origins = centres[:, None, None, :].expand_as(dirs_world)
    return origins, dirs_world, dirs_cam[..., 2]
