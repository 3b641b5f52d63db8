"""Camera conventions: SE(3) inverse and conversions into the project's convention.

The project convention is world-to-camera extrinsics ``E = [[R, t], [0, 1]]`` with OpenCV camera
axes (x right, y down, z forward) and pixel-unit intrinsics ``K``. Loaders convert once, at load
time, with these functions.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

# camera axes flip between OpenGL/Blender (x right, y up, z backward) and OpenCV (y down, z forward)
_GL_TO_CV_AXES = (1.0, -1.0, -1.0, 1.0)


def full_precision(tensor: Tensor) -> AbstractContextManager:
    """Autocast switched off on ``tensor``'s device: camera geometry (pose inverses, rays, pose
    operators) runs in its inputs' precision even inside a model's bf16/fp16 autocast region, where
    matmuls would otherwise round poses to 8 bits of mantissa and mix dtypes in the backward.
    Outside autocast nothing is entered (an autocast context costs ~2 % of a small model's step)."""
    device_type = tensor.device.type
    try:
        active = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no per-device query
        active = True
    return torch.autocast(device_type, enabled=False) if active else nullcontext()


def invert_se3(transform: Tensor) -> Tensor:
    """Closed-form inverse ``[[Rᵀ, −Rᵀt], [0, 1]]`` of rigid transforms ``(..., 4, 4)``."""
    rot_t = transform[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ transform[..., :3, 3:])
    top = torch.cat([rot_t, trans], dim=-1)
    return torch.cat([top, transform[..., 3:, :]], dim=-2)


def opengl_c2w_to_opencv_w2c(c2w: Tensor) -> Tensor:
    """OpenGL/Blender camera-to-world ``(..., 4, 4)`` → OpenCV world-to-camera ``(..., 4, 4)``."""
    flip = torch.tensor(_GL_TO_CV_AXES, dtype=c2w.dtype, device=c2w.device)
    return invert_se3(c2w * flip)


def opencv_w2c_to_opengl_c2w(w2c: Tensor) -> Tensor:
    """OpenCV world-to-camera ``(..., 4, 4)`` → OpenGL/Blender camera-to-world ``(..., 4, 4)``."""
    flip = torch.tensor(_GL_TO_CV_AXES, dtype=w2c.dtype, device=w2c.device)
    return invert_se3(w2c) * flip


def intrinsics_from_fov(fov_x: float, width: int, height: int, *, fov_y: float | None = None) -> Tensor:
    """Pixel-unit ``K (3, 3)`` from horizontal field of view (radians), principal point at the centre.

    ``fov_y`` defaults to square pixels (same focal length on both axes), as in Blender's
    ``transforms.json`` (``camera_angle_x``).
    """
    fx = 0.5 * width / math.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / math.tan(0.5 * fov_y)
    return torch.tensor([[fx, 0.0, 0.5 * width], [0.0, fy, 0.5 * height], [0.0, 0.0, 1.0]])


def random_se3(*shape: int, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None) -> Tensor:
    """Random rigid transforms ``(*shape, 4, 4)``: Haar-like rotations, Gaussian translations."""
    q, r = torch.linalg.qr(torch.randn(*shape, 3, 3, dtype=torch.float64, generator=generator))
    rot = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    rot = rot * torch.linalg.det(rot)[..., None, None]  # proper rotation (det = +1)
    top = torch.cat([rot, torch.randn(*shape, 3, 1, dtype=torch.float64, generator=generator)], dim=-1)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(*shape, 1, 4)
    return torch.cat([top, bottom], dim=-2).to(dtype)
