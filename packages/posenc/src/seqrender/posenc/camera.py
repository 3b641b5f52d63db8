"""Camera (SE(3)) blocks of CaPE and GTA, applied through ``(..., d/4, 4)`` views.

With ``P`` a token's world-to-camera extrinsic, GTA maps ``q ← Pᵀq``, ``k ← P⁻¹k``, ``v ← P⁻¹v``
and ``out ← P·out``; CaPE only transforms q and k. A head's channels are read as ``r`` 4-vectors,
each transformed by the same ``4 × 4`` block, so the logits depend on ``P_i P_j⁻¹`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from .conventions import invert_se3


@dataclass(frozen=True)
class PoseOperators:
    """Right-multiplication operators for row-vector 4-chunks, each ``(B|1, G, 4, 4)``.

    ``query = P`` (``x ↦ Pᵀx``), ``key = P⁻ᵀ`` (``x ↦ P⁻¹x``, also for values),
    ``output = Pᵀ`` (``x ↦ Px``). ``G = N`` is one pose per token; otherwise pose ``g`` is shared
    by a run of ``N/G`` contiguous tokens (``apply_pose_blocks``).
    """

    query: Tensor
    key: Tensor
    output: Tensor

    @classmethod
    def from_extrinsics(cls, extrinsics: Tensor) -> PoseOperators:
        """extrinsics: world-to-camera ``(B|1, G, 4, 4)``; P⁻¹ in closed form (Rᵀ, −Rᵀt)."""
        if extrinsics.shape[-2:] != (4, 4):
            raise ValueError(f"extrinsics must end in (4, 4); got shape {tuple(extrinsics.shape)}")
        return cls(
            query=extrinsics,
            key=invert_se3(extrinsics).transpose(-1, -2),
            output=extrinsics.transpose(-1, -2),
        )


def check_pose_groups(tokens: int, groups: int) -> None:
    """Raise ValueError unless ``groups`` poses cover ``tokens`` tokens in equal contiguous runs."""
    if groups < 1 or tokens % groups:
        raise ValueError(
            "extrinsics need one 4×4 pose per token or per run of contiguous tokens (G dividing N); "
            f"got G = {groups} poses for N = {tokens} tokens"
        )


def repeat_blocks(operator: Tensor, repeats: int) -> Tensor:
    """``(..., 4, 4)`` → ``(..., 4r, 4r)``: ``r = repeats`` copies of the block on the diagonal."""
    eye = torch.eye(repeats, dtype=operator.dtype, device=operator.device)
    return rearrange(torch.einsum("rs,...jk->...rjsk", eye, operator), "... r j s k -> ... (r j) (s k)")


def grouped_chunks(x: Tensor, operator: Tensor) -> Tensor:
    """``x: (B, H, N, c·r)`` → ``(B, H, G, N/G, r, c)`` view: its c-chunks by pose group of ``operator``.

    ``operator (B|1, G, c, c)`` holds one block per token (``G = N``) or per run of ``N/G``
    contiguous tokens (group ``g`` covers tokens ``[g·N/G, (g+1)·N/G)``).
    """
    check_pose_groups(x.shape[-2], operator.shape[-3])
    return rearrange(x, "b h (g n) (r j) -> b h g n r j", g=operator.shape[-3], j=operator.shape[-1])


def apply_pose_blocks(x: Tensor, operator: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``x: (B, H, N, c·r)`` read as ``r`` row c-vectors per token, times ``operator: (B|1, G, c, c)``.

    ``c = 4`` for a pose, ``4·m`` for its ``repeat_blocks(operator, m)`` form. Block ``g`` applies to the
    ``N/G`` contiguous tokens of group ``g`` (``G = N``: one per token). One GEMM per group over its
    heads' and tokens' chunks (``(H·N/G·r) × c @ c × c``): on CPU far cheaper than a broadcast
    matmul, which multiplies ``r × c`` blocks one head at a time; with ``G < N`` a ``c = 16``
    form is faster still (longer contiguous runs in the layout copies, a better GEMM shape).
    The product is copied once, into ``out`` (a view shaped like ``x``) if given.
    """
    chunks = grouped_chunks(x, operator)
    heads, per_group, repeats = chunks.shape[1], chunks.shape[3], chunks.shape[4]
    product = rearrange(chunks, "b h g n r j -> b g (h n r) j") @ operator
    out = torch.empty_like(x) if out is None else out
    grouped_chunks(out, operator).copy_(
        rearrange(product, "b g (h n r) k -> b h g n r k", h=heads, n=per_group, r=repeats)
    )
    return out
