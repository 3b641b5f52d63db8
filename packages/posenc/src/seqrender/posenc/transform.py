"""A per-token block-diagonal transform: 2×2 rotations (RoPE) and repeated 4×4 pose blocks (CaPE).

One class covers RoPE, CaPE and GTA: ``values=False`` transforms q and k only (RoPE, CaPE);
``values=True`` also transforms v and, inversely, the attention output (GTA). Rotations are the
SO(2) blocks of GTA: with ``P = R(−θ)`` the GTA rule ``q ← Pᵀq, k ← P⁻¹k`` is plain RoPE on q and
k, RoPE on v, and the inverse rotation on the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .blockfn import BlockApply, BlockOp
from .camera import PoseOperators
from .conventions import full_precision
from .rope import LAYOUTS, check_choice, rope_cis


@dataclass(frozen=True)
class Rotary:
    """2×2 rotations on channels ``[start, start + 2n)``; angles ``(B|1, N, n)``."""

    angles: Tensor
    start: int = 0
    layout: str = "half"

    @property
    def stop(self) -> int:
        return self.start + 2 * self.angles.shape[-1]


@dataclass(frozen=True)
class PoseBlocks:
    """World-to-camera ``extrinsics (B|1, G, 4, 4)`` repeated ``repeats`` times from ``start``.

    ``G = N``: one pose per token; otherwise pose ``g`` is shared by the ``N/G`` contiguous tokens
    ``[g·N/G, (g+1)·N/G)`` and applied with one GEMM per group (``apply_pose_blocks``). ``fused``:
    multiply by a block-diagonal ``16 × 16`` form of each pose (``FUSED_REPEATS`` copies), built
    once: a faster GEMM at 16× the operator memory, so meant for grouped poses (``G < N``).
    """

    extrinsics: Tensor
    start: int
    repeats: int
    fused: bool = False

    @property
    def stop(self) -> int:
        return self.start + 4 * self.repeats


class BlockTransform:
    """PositionalTransform from per-token rotations and/or pose blocks; other channels pass through.

    Operators are built once here (``e^{iθ}``, ``P``, ``P⁻ᵀ``, ``Pᵀ``) with a head axis of size 1,
    so the same object serves every layer of a forward pass, for any q/kv head counts. Each of q,
    k, v, o is transformed by one fused pass (``BlockApply``) with a hand-written backward.
    """

    def __init__(self, *, rotary: Rotary | None = None, pose: PoseBlocks | None = None, values: bool = False):
        if rotary is not None:
            check_choice("layout", rotary.layout, LAYOUTS)
        segments = sorted((s for s in (rotary, pose) if s is not None), key=lambda s: s.start)
        if len(segments) == 2 and segments[0].stop > segments[1].start:
            raise ValueError(
                f"rotary channels [{rotary.start}, {rotary.stop}) overlap pose channels [{pose.start}, {pose.stop})"
            )
        self.values = values
        self.stop = segments[-1].stop if segments else 0
        layout = rotary.layout if rotary is not None else "half"
        rot_range = (rotary.start, rotary.stop) if rotary is not None else (0, 0)
        pose_range = (pose.start, pose.stop) if pose is not None else (0, 0)
        self.dtype = torch.float32
        for seg in segments:  # float64 operators keep float64 inputs exact
            self.dtype = torch.promote_types(self.dtype, (seg.angles if seg is rotary else seg.extrinsics).dtype)
        cis = cis_out = None
        source = rotary.angles if rotary is not None else pose.extrinsics if pose is not None else torch.empty(0)
        with full_precision(source):  # operators in self.dtype under a model's autocast too
            if rotary is not None:
                cis = rope_cis(rotary.angles.to(self.dtype)).unsqueeze(1)
                cis_out = cis.conj().resolve_conj()
            ops = PoseOperators.from_extrinsics(pose.extrinsics.to(self.dtype)) if pose is not None else None
            fused = pose is not None and pose.fused
            make = lambda c, name: BlockOp.build(
                c, rot_range, getattr(ops, name) if ops else None, pose_range, layout, fused=fused
            )
            self.query_op, self.key_op, self.output_op = make(cis, "query"), make(cis, "key"), make(cis_out, "output")

    def _apply(self, x: Tensor, op: BlockOp) -> Tensor:
        """x: ``(B, H, N, d)`` → same shape; float16/bfloat16 inputs are computed in float32 (autocast off)."""
        if x.shape[-1] < self.stop:
            raise ValueError(f"this transform covers {self.stop} channels but head_dim is {x.shape[-1]}")
        dtype = torch.promote_types(x.dtype, self.dtype)
        with full_precision(x):  # under autocast too: the operators and the hand-written backward stay in `dtype`
            return BlockApply.apply(x.to(dtype), op.cis, op.pose, op).to(x.dtype)

    def transform_qkv(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q: ``(B, Hq, N, d)``; k, v: ``(B, Hkv, N, d)``."""
        q, k = self._apply(q, self.query_op), self._apply(k, self.key_op)
        if self.values:
            v = self._apply(v, self.key_op)
        return q, k, v

    def transform_out(self, o: Tensor) -> Tensor:
        """o: ``(B, Hq, N, d)``; the inverse of the value map (identity unless ``values``)."""
        return self._apply(o, self.output_op) if self.values else o
