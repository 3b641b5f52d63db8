"""Ground truth: dense SDPA over all N (+ R) keys with the boolean view-time mask."""

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import append_registers
from .mask import viewtime_mask


def reference_viewtime(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    views: int,
    times: int,
    *,
    registers: tuple[Tensor, Tensor] | None = None,
    frame_mask: Tensor | None = None,
) -> Tensor:
    """q (B, Hq, N, d), k and v (B, Hkv, N, d), registers (R, Hkv, d) pairs -> (B, Hq, N, d)."""
    tokens = q.shape[2] // (views * times)
    mask = viewtime_mask(views, times, tokens, frame_mask=frame_mask, device=q.device)
    if registers is not None:
        k, v, mask = append_registers(k, v, *registers, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
