"""Camera head: final camera token -> VGGT's 9-d pose encoding `absT_quaR_FoV`
(translation t (3), rotation quaternion (x, y, z, w) (4), field of view (fov_h, fov_w) (2)) of the
OpenCV world-to-camera pose, and its decoding into extrinsics / pixel intrinsics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrender.recon.rasterizer import quaternion_to_matrix


class CameraHead(nn.Module):
    """camera tokens (..., in_dim) -> pose encodings (..., 9); starts at identity rotation,
    zero translation and 60° field of view."""

    def __init__(self, in_dim: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 9))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        fov_bias = math.log(math.expm1(math.radians(60.0)))  # softplus⁻¹(60°)
        self.register_buffer("bias", torch.tensor([0, 0, 0, 0, 0, 0, 1.0, fov_bias, fov_bias]), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        raw = self.mlp(tokens) + self.bias
        trans, quat, fov = raw.split([3, 4, 2], dim=-1)
        return torch.cat([trans, F.normalize(quat, dim=-1), F.softplus(fov)], dim=-1)


def decode_pose_encoding(encoding: Tensor, *, height: int, width: int) -> tuple[Tensor, Tensor]:
    """encoding (..., 9) -> extrinsics (..., 4, 4) world-to-camera, intrinsics (..., 3, 3) with
    f_y = (H/2)/tan(fov_h/2), f_x = (W/2)/tan(fov_w/2) and the principal point at the image centre."""
    trans, quat_xyzw, fov = encoding.split([3, 4, 2], dim=-1)
    rot = quaternion_to_matrix(torch.cat([quat_xyzw[..., 3:], quat_xyzw[..., :3]], dim=-1))
    extrinsics = torch.zeros(*encoding.shape[:-1], 4, 4, dtype=encoding.dtype, device=encoding.device)
    extrinsics[..., :3, :3] = rot
    extrinsics[..., :3, 3] = trans
    extrinsics[..., 3, 3] = 1.0
    intrinsics = torch.zeros_like(extrinsics[..., :3, :3])
    intrinsics[..., 0, 0] = 0.5 * width / torch.tan(0.5 * fov[..., 1])
    intrinsics[..., 1, 1] = 0.5 * height / torch.tan(0.5 * fov[..., 0])
    intrinsics[..., 0, 2] = 0.5 * width
    intrinsics[..., 1, 2] = 0.5 * height
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
