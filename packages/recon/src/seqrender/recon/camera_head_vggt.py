"""VGGT's camera head (facebookresearch/vggt `heads/camera_head.py`), written here from its
description with the same parameter names and shapes, so `camera_head.*` of a VGGT checkpoint loads.

The final-layer camera tokens of the S frames of one scene (B, S, C) are LayerNorm-ed, then refined
`iterations` times: the current pose encoding (the learnt `empty_pose_tokens` at first, then the
detached running estimate) is embedded (`embed_pose`), turned into an adaLN shift / scale / gate
(`poseLN_modulation` = SiLU → Linear), which modulates the non-affine-normalised tokens
(`x + gate·(norm(x)·(1 + scale) + shift)`); a `trunk` of transformer blocks (attention across the S
frames, layer scale, no QK norm, no RoPE) and `trunk_norm` follow, and `pose_branch` (MLP C → C/2 → 9)
adds a delta to the estimate. Output activations: translation and quaternion linear, field of view
ReLU. The encoding is `absT_quaR_FoV` (`camera_head.decode_pose_encoding`).

Keys: token_norm, trunk.<i>.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma},
trunk_norm, empty_pose_tokens (1, 1, 9), embed_pose, poseLN_modulation.1, pose_branch.{fc1, fc2}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrender.recon.layers import Block, Mlp

POSE_DIM = 9


class VGGTCameraHead(nn.Module):
    """camera tokens (B, S, dim_in) -> pose encodings (B, S, 9) of the last iteration
    (`forward_all` returns every iteration's). VGGT-1B: dim_in 2048, 4 trunk blocks, 16 heads."""

    def __init__(self, dim_in: int = 2048, *, trunk_depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4.0,
                 init_values: float = 0.01, iterations: int = 4):
        super().__init__()
        self.iterations = iterations
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk = nn.Sequential(*(Block(dim_in, num_heads, mlp_ratio=mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)))
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, out_dim=POSE_DIM)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_all(tokens)[-1]

    def forward_all(self, tokens: Tensor) -> list[Tensor]:
        """tokens (B, S, C) -> [pose encodings (B, S, 9)] × iterations, activated."""
        x = self.token_norm(tokens)
        estimate = None
        out = []
        for _ in range(self.iterations):
            current = self.empty_pose_tokens.expand(*x.shape[:-1], -1) if estimate is None else estimate.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(current)).chunk(3, dim=-1)
            y = x + gate * (self.adaln_norm(x) * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(y)))
            estimate = delta if estimate is None else estimate + delta
            out.append(activate_pose(estimate))
        return out


def activate_pose(encoding: Tensor) -> Tensor:
    """(…, 9) raw -> translation and quaternion unchanged, fields of view through ReLU."""
    return torch.cat([encoding[..., :7], F.relu(encoding[..., 7:])], dim=-1)
