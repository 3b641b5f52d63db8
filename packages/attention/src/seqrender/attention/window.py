"""Temporal window attention (Kaleido §3.2.1 iv): the H×W grid is split into non-overlapping K×K
windows and each window's V·K² tokens (all frames) attend to each other.

Token order (the order a positional hook must use): windows are ordered (B, nH, nW) along the batch
axis and the tokens inside a window are ordered (V, K, K), i.e. token index
`v·K² + i·K + j` is frame v, row `wh·K + i`, column `ww·K + j` of window (wh, ww). A model builds
the hook for this layer by passing its per-token attribute grids (angles, poses, times) through
`window_partition`, which guarantees the same order.
"""

import torch
from einops import rearrange
from torch import Tensor

from .core import AttentionLayer
from .hook import PositionalHook


def _num_windows(size: int, window: int) -> int:
    return -(-size // window)


def _check_window(window: int) -> None:
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int; got {window!r}")


def _to_windows(x: Tensor, window: int) -> Tensor:
    """(B, V, nH·K, nW·K, *C) -> (B·nH·nW, V·K·K, *C)."""
    return rearrange(x, "b v (nh i) (nw j) ... -> (b nh nw) (v i j) ...", i=window, j=window)


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, V, H, W, *C) -> (B·nW, V·K·K, *C) with nW = ceil(H/K)·ceil(W/K).

    H and W are padded up to multiples of K by edge replication (so attribute grids such as angles
    or poses stay well defined on padded tokens; use `window_valid_mask` to mask them).
    """
    _check_window(window)
    height, width = x.shape[2], x.shape[3]
    rows = torch.arange(_num_windows(height, window) * window, device=x.device).clamp(max=height - 1)
    cols = torch.arange(_num_windows(width, window) * window, device=x.device).clamp(max=width - 1)
    return _to_windows(x[:, :, rows][:, :, :, cols], window)


def window_unpartition(x: Tensor, window: int, shape: tuple[int, int, int, int]) -> Tensor:
    """(B·nW, V·K·K, *C) -> (B, V, H, W, *C) for shape = (B, V, H, W); padding is cropped."""
    _check_window(window)
    batch, frames, height, width = shape
    n_h, n_w = _num_windows(height, window), _num_windows(width, window)
    grid = rearrange(
        x, "(b nh nw) (v i j) ... -> b v (nh i) (nw j) ...", b=batch, nh=n_h, nw=n_w, v=frames, i=window
    )
    return grid[:, :, :height, :width]


def window_valid_mask(height: int, width: int, window: int, *, frames: int = 1, device=None) -> Tensor:
    """(nW, V·K·K) bool: True for real tokens, False for the padding added by `window_partition`."""
    _check_window(window)
    hp, wp = _num_windows(height, window) * window, _num_windows(width, window) * window
    rows = torch.arange(hp, device=device)[:, None] < height
    cols = torch.arange(wp, device=device)[None, :] < width
    grid = (rows & cols).expand(1, frames, hp, wp)
    return _to_windows(grid, window)


def window_frame_mask(frame_mask: Tensor, window: int, num_windows: int) -> Tensor:
    """Frame mask (B, V, V) -> token mask (B·nW, 1, V·K·K, V·K·K) in window_partition order."""
    tokens = window * window
    mask = frame_mask.repeat_interleave(tokens, dim=1).repeat_interleave(tokens, dim=2)
    return mask.repeat_interleave(num_windows, dim=0)[:, None]


def check_frame_mask(frame_mask: Tensor, batch: int, frames: int) -> None:
    """Raise ValueError unless frame_mask is a bool tensor of shape (B, V, V)."""
    if frame_mask.dtype != torch.bool or tuple(frame_mask.shape) != (batch, frames, frames):
        raise ValueError(
            f"frame_mask must be bool of shape (B, V, V) = {(batch, frames, frames)}; "
            f"got {frame_mask.dtype} {tuple(frame_mask.shape)}"
        )


class WindowAttention(AttentionLayer):
    """Attention among the V·K² tokens of each K×K window across all frames.

    K = 1 is plain per-location temporal attention; K >= max(H, W) is full attention over all
    frames. Padded tokens are never attended to.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        window: int = 4,
        num_registers: int = 1,
        qk_norm: bool = False,
    ):
        super().__init__(dim, num_heads, num_kv_heads, num_registers=num_registers, qk_norm=qk_norm)
        _check_window(window)
        self.window = window

    def mask(self, shape: tuple[int, int, int, int], frame_mask: Tensor | None, device) -> Tensor | None:
        """Key mask (B·nW, 1, V·K², V·K²) bool combining padding and frame_mask, or None if all-True."""
        batch, frames, height, width = shape
        k = self.window
        mask = None
        if height % k or width % k:
            valid = window_valid_mask(height, width, k, frames=frames, device=device)
            mask = valid.repeat(batch, 1)[:, None, None, :]
        if frame_mask is not None:
            check_frame_mask(frame_mask, batch, frames)
            n_win = _num_windows(height, k) * _num_windows(width, k)
            fm = window_frame_mask(frame_mask, k, n_win)
            mask = fm if mask is None else mask & fm
        return mask

    def forward(
        self, x: Tensor, *, transform: PositionalHook | None = None, frame_mask: Tensor | None = None
    ) -> Tensor:
        """x (B, V, H, W, D) -> (B, V, H, W, D).

        transform acts on (B·nW, heads, V·K·K, d) in window_partition order;
        frame_mask (B, V, V) bool: frame_mask[b, i, j] = frame i may attend to frame j.
        """
        shape = tuple(x.shape[:4])
        windows = window_partition(x, self.window)
        out = self.attn(windows, transform=transform, attn_mask=self.mask(shape, frame_mask, x.device))
        return window_unpartition(out, self.window, shape)
