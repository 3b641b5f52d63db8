"""Fused view-time attention with PyTorch FlexAttention and a block mask (the paper's backend).

On CPU FlexAttention runs forward only (no CPU backward); on GPU it is trainable. Registers are
appended to the keys and values and are always attendable.
"""

from functools import lru_cache

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from ..core import append_registers


def _pattern_mod(views: int, times: int, tokens: int, frame_mask: Tensor | None):
    """mask_mod(b, h, q_idx, kv_idx) of the view-time pattern; keys >= V·T·S are registers."""
    n = views * times * tokens

    def mask_mod(b, h, q_idx, kv_idx):
        q_view, q_time = q_idx // (times * tokens), (q_idx // tokens) % times
        k_view, k_time = kv_idx // (times * tokens), (kv_idx // tokens) % times
        allowed = (q_view == k_view) | (q_time == k_time)
        if frame_mask is not None:
            k_frame = torch.clamp(kv_idx // tokens, max=views * times - 1)
            allowed = allowed & frame_mask[b, q_idx // tokens, k_frame]
        return allowed | (kv_idx >= n)

    return mask_mod


@lru_cache(maxsize=16)
def _cached_block_mask(views: int, times: int, tokens: int, num_registers: int, device: str) -> BlockMask:
    n = views * times * tokens
    return create_block_mask(_pattern_mod(views, times, tokens, None), None, None, n, n + num_registers, device=device)


def viewtime_block_mask(
    views: int, times: int, tokens: int, *, num_registers: int = 0, frame_mask: Tensor | None = None, device="cpu"
) -> BlockMask:
    """FlexAttention BlockMask of the pattern over N = V·T·S queries and N + R keys."""
    if frame_mask is None:
        return _cached_block_mask(views, times, tokens, num_registers, str(device))
    n = views * times * tokens
    mod = _pattern_mod(views, times, tokens, frame_mask)
    return create_block_mask(mod, frame_mask.shape[0], None, n, n + num_registers, device=device)


@lru_cache(maxsize=1)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def flex_viewtime(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    views: int,
    times: int,
    *,
    registers: tuple[Tensor, Tensor] | None = None,
    frame_mask: Tensor | None = None,
    compile: bool = False,
) -> Tensor:
    """q (B, Hq, V·T·S, d), k and v (B, Hkv, V·T·S, d) -> (B, Hq, V·T·S, d).

    compile: run torch.compile'd FlexAttention (fused kernel; first call compiles for ~20 s on CPU).
    """
    tokens = q.shape[2] // (views * times)
    num_registers = 0
    if registers is not None:
        num_registers = registers[0].shape[0]
        k, v, _ = append_registers(k, v, *registers, None)
    block_mask = viewtime_block_mask(
        views, times, tokens, num_registers=num_registers, frame_mask=frame_mask, device=q.device
    )
    attend = _compiled_flex() if compile else flex_attention
    return attend(q, k, v, block_mask=block_mask, enable_gqa=q.shape[1] != k.shape[1])
