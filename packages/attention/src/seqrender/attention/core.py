"""Grouped-query attention with QK-norm, learnable register tokens and a positional hook."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .hook import PositionalHook


def check_heads(dim: int, num_heads: int, num_kv_heads: int | None) -> int:
    """Validate a head layout and return the number of kv heads."""
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads must be >= 1 and divide dim={dim}; got num_heads={num_heads}")
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads must be >= 1 and divide num_heads={num_heads}; got num_kv_heads={num_kv_heads}"
        )
    return num_kv_heads


def append_registers(
    k: Tensor, v: Tensor, reg_k: Tensor, reg_v: Tensor, attn_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Append register keys/values (always attendable) to a sequence.

    k, v: (B, Hkv, N, d); reg_k, reg_v: (R, Hkv, d); attn_mask: bool broadcastable to (B, 1, Nq, N)
    or None. Returns k, v (B, Hkv, N + R, d) and the mask (B, 1, Nq, N + R) or None.
    """
    num_reg = reg_k.shape[0]
    if num_reg == 0:
        return k, v, attn_mask
    batch = k.shape[0]
    reg_k = rearrange(reg_k, "r h d -> 1 h r d").expand(batch, -1, -1, -1).to(k.dtype)
    reg_v = rearrange(reg_v, "r h d -> 1 h r d").expand(batch, -1, -1, -1).to(v.dtype)
    k, v = torch.cat([k, reg_k], dim=2), torch.cat([v, reg_v], dim=2)
    if attn_mask is not None:
        attn_mask = torch.broadcast_to(attn_mask, (batch, 1, *attn_mask.shape[-2:]))
        ones = attn_mask.new_ones(*attn_mask.shape[:-1], num_reg)
        attn_mask = torch.cat([attn_mask, ones], dim=-1)
    return k, v, attn_mask


class Attention(nn.Module):
    """Multi-head self-attention with GQA, optional QK-norm and register tokens.

    `num_registers` learnable key/value pairs (R, Hkv, d) are appended to the keys and values after
    the positional hook (they carry no position) and every query may attend to them.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        num_registers: int = 1,
        qk_norm: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        self.num_kv_heads = check_heads(dim, num_heads, num_kv_heads)
        if num_registers < 0:
            raise ValueError(f"num_registers must be >= 0; got {num_registers}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_kv = nn.Linear(dim, 2 * kv_dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.q_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        shape = (num_registers, self.num_kv_heads, self.head_dim)
        self.register_k = nn.Parameter(torch.randn(shape) * 0.02)
        self.register_v = nn.Parameter(torch.randn(shape) * 0.02)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, D) -> q (B, Hq, N, d), k and v (B, Hkv, N, d), with QK-norm applied."""
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.to_kv(x), "b n (two h d) -> two b h n d", two=2, h=self.num_kv_heads)
        return self.q_norm(q), self.k_norm(k), v

    def registers(self) -> tuple[Tensor, Tensor]:
        """Register keys and values (R, Hkv, d), keys QK-normed like the sequence keys."""
        return self.k_norm(self.register_k), self.register_v

    def merge(self, o: Tensor) -> Tensor:
        """o (B, Hq, N, d) -> (B, N, D) through the output projection."""
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def forward(
        self, x: Tensor, *, transform: PositionalHook | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        """x (B, N, D) -> (B, N, D).

        attn_mask: bool broadcastable to (B, 1, N, N), True = may attend; registers are always
        attendable, so a fully masked row still has a valid softmax when num_registers >= 1.
        """
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be a bool tensor; got dtype {attn_mask.dtype}")
        q, k, v = self.project(x)
        if transform is not None:
            q, k, v = transform.transform_qkv(q, k, v)
        k, v, attn_mask = append_registers(k, v, *self.registers(), attn_mask)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=True)
        if transform is not None:
            o = transform.transform_out(o)
        return self.merge(o)


class AttentionLayer(nn.Module):
    """Base of the layers that reshape a token grid around one `Attention` (held as `self.attn`)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        num_registers: int = 1,
        qk_norm: bool = False,
    ):
        super().__init__()
        self.attn = Attention(dim, num_heads, num_kv_heads, num_registers=num_registers, qk_norm=qk_norm)
