"""The fused view-time pattern (4Real-Video-V2 §3.1) as dense boolean masks.

Tokens are ordered (v, t, s) on a V × T grid of frames with S tokens each; frame index f = v·T + t.
Token (v, t, s) attends to (v', t', s') iff v' = v or t' = t (and, with a frame mask, iff
frame_mask[b, f, f'] is True). Register tokens, appended after the N = V·T·S sequence keys, are
always attendable.
"""

import torch
from torch import Tensor


def token_coordinates(views: int, times: int, tokens: int, *, device=None) -> tuple[Tensor, Tensor]:
    """(N,) view and time index of each token in (v, t, s) order."""
    index = torch.arange(views * times * tokens, device=device)
    return index // (times * tokens), (index // tokens) % times


def viewtime_frame_mask(views: int, times: int, *, device=None) -> Tensor:
    """(V·T, V·T) bool frame-level pattern: frame (v, t) sees (v', t') iff v' = v or t' = t."""
    view, time = token_coordinates(views, times, 1, device=device)
    return (view[:, None] == view[None]) | (time[:, None] == time[None])


def viewtime_mask(
    views: int,
    times: int,
    tokens: int,
    *,
    frame_mask: Tensor | None = None,
    num_registers: int = 0,
    device=None,
) -> Tensor:
    """Dense token mask (B or 1, 1, N, N + R) bool, True = may attend.

    frame_mask: optional (B, V·T, V·T) bool, AND-ed with the pattern on the sequence keys.
    """
    view, time = token_coordinates(views, times, tokens, device=device)
    mask = ((view[:, None] == view[None]) | (time[:, None] == time[None]))[None]
    if frame_mask is not None:
        frame = view * times + time
        mask = mask & frame_mask[:, frame][:, :, frame]
    registers = mask.new_ones(*mask.shape[:-1], num_registers)
    return torch.cat([mask, registers], dim=-1)[:, None]


def pattern_density(views: int, times: int) -> float:
    """Fraction of frame pairs the pattern attends to: (V + T − 1) / (V·T)."""
    return (views + times - 1) / (views * times)
