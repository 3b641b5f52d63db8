"""Camera (SE(3)) blocks of CaPE and GTA, applied through ``(..., d/4, 4)`` views.

With ``P`` a token's world-to-camera extrinsic, GTA maps ``q ← Pᵀq``, ``k ← P⁻¹k``, ``v ← P⁻¹v``
and ``out ← P·out``; CaPE only transforms q and k. A head's channels are read as ``r`` 4-vectors,
each transformed by the same ``4 × 4`` block, so the logits depend on ``P_i P_j⁻¹`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .conventions import invert_se3


@dataclass(frozen=True)
class PoseOperators:
    """Right-multiplication operators for row-vector 4-chunks, each ``(B|1, N, 4, 4)``.

    ``query = P`` (``x ↦ Pᵀx``), ``key = P⁻ᵀ`` (``x ↦ P⁻¹x``, also for values),
    ``output = Pᵀ`` (``x ↦ Px``).
    """

    query: Tensor
    key: Tensor
    output: Tensor

    @classmethod
    def from_extrinsics(cls, extrinsics: Tensor) -> PoseOperators:
        """extrinsics: world-to-camera ``(B|1, N, 4, 4)``; P⁻¹ in closed form (Rᵀ, −Rᵀt)."""
        if extrinsics.shape[-2:] != (4, 4):
            raise ValueError(f"extrinsics must end in (4, 4); got shape {tuple(extrinsics.shape)}")
        return cls(
            query=extrinsics,
            key=invert_se3(extrinsics).transpose(-1, -2),
            output=extrinsics.transpose(-1, -2),
        )


def apply_pose_blocks(x: Tensor, operator: Tensor) -> Tensor:
    """``x: (B, H, N, 4r)`` read as ``r`` row 4-vectors per token, times ``operator: (B|1, N, 4, 4)``.

    One GEMM per token over all heads' 4-chunks (``(H·r) × 4 @ 4 × 4``): on CPU far cheaper than
    a broadcast matmul, which multiplies ``r × 4`` blocks one head at a time.
    """
    return torch.einsum("bhnrj,bnjk->bhnrk", x.unflatten(-1, (-1, 4)), operator).flatten(-2)
