"""Camera-token replacement (4Real-Video-V2 §3.2): after the backbone, the camera token of every
view at every timestep is replaced by that view's camera token at the first timestep, so all
timesteps of a view share one predicted camera."""

from __future__ import annotations

import torch
from torch import Tensor


def replace_camera_tokens(tokens: Tensor, *, camera_index: int = 0) -> Tensor:
    """tokens (B, V, T, N, C) -> (B, V, T, N, C) with token `camera_index` of every (v, t) set to
    that of (v, t = 0); all other tokens unchanged. Gradients of replaced tokens flow to t = 0."""
    if tokens.dim() != 5:
        raise ValueError(f"tokens must be (B, V, T, N, C), got shape {tuple(tokens.shape)}")
    if not 0 <= camera_index < tokens.shape[3]:
        raise ValueError(f"camera_index must be in [0, {tokens.shape[3]}), got {camera_index}")
    first = tokens[:, :, :1, camera_index : camera_index + 1].expand(-1, -1, tokens.shape[2], -1, -1)
    return torch.cat([tokens[:, :, :, :camera_index], first, tokens[:, :, :, camera_index + 1 :]], dim=3)
