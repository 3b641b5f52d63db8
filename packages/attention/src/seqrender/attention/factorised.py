"""Factorised attention over a (B, V, H, W, D) token grid: spatial (within each frame) and plain
temporal (across frames, per spatial location)."""

from einops import rearrange
from torch import Tensor

from .core import AttentionLayer
from .hook import PositionalHook
from .window import check_frame_mask


class SpatialAttention(AttentionLayer):
    """Self-attention among the H·W tokens of each frame (row-major token order)."""

    def forward(self, x: Tensor, *, transform: PositionalHook | None = None) -> Tensor:
        """x (B, V, H, W, D) -> (B, V, H, W, D); transform acts on (B·V, heads, H·W, d)."""
        b, v, h, w, _ = x.shape
        out = self.attn(rearrange(x, "b v h w d -> (b v) (h w) d"), transform=transform)
        return rearrange(out, "(b v) (h w) d -> b v h w d", b=b, v=v, h=h, w=w)


class TemporalAttention(AttentionLayer):
    """Self-attention among the V tokens at each spatial location (one sequence per (b, h, w))."""

    def forward(
        self, x: Tensor, *, transform: PositionalHook | None = None, frame_mask: Tensor | None = None
    ) -> Tensor:
        """x (B, V, H, W, D) -> (B, V, H, W, D).

        transform acts on (B·H·W, heads, V, d), sequences ordered (b, h, w);
        frame_mask (B, V, V) bool: frame_mask[b, i, j] = frame i may attend to frame j.
        """
        b, v, h, w, _ = x.shape
        mask = None
        if frame_mask is not None:
            check_frame_mask(frame_mask, b, v)
            mask = frame_mask.repeat_interleave(h * w, dim=0)[:, None]
        out = self.attn(rearrange(x, "b v h w d -> (b h w) v d"), transform=transform, attn_mask=mask)
        return rearrange(out, "(b h w) v d -> b v h w d", b=b, h=h, w=w)
