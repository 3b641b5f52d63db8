"""Camera (SE(3)) blocks of CaPE and GTA, applied through ``(..., d/4, 4)`` views.

With ``P`` a token's world-to-camera extrinsic, GTA maps ``q ← Pᵀq``, ``k ← P⁻¹k``, ``v ← P⁻¹v``
and ``out ← P·out``; CaPE only transforms q and k. A head's channels are read as ``r`` 4-vectors,
each transformed by the same ``4 × 4`` block, so the logits depend on ``P_i P_j⁻¹`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange
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

    One batched matmul over ``(B, N)`` with ``H·r`` rows each; returns ``(B, H, N, 4r)``.
    """
    heads = x.shape[1]
    rows = rearrange(x, "b h n (r j) -> b n (h r) j", j=4)
    out = rows @ operator
    return rearrange(out, "b n (h r) j -> b h n (r j)", h=heads)
