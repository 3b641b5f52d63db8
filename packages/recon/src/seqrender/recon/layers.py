"""Transformer layers with VGGT / DINOv2 parameter names (so their checkpoints load strictly);
the DINOv2 ViT built from them is `seqrender.recon.dinov2`.

Block keys: `norm1`, `attn.qkv`, `attn.q_norm`, `attn.k_norm` (when qk_norm), `attn.proj`, `ls1.gamma`,
`norm2`, `mlp.fc1`, `mlp.fc2`, `ls2.gamma`. Attention is plain `scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Rope2D(nn.Module):
    """2-D rotary embedding (VGGT/CroCo style): first half of each head rotated by the token's row,
    second half by its column, `rotate_half` pairing, base `frequency`. No parameters."""

    def __init__(self, frequency: float = 100.0):
        super().__init__()
        self.frequency = frequency

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x (B, heads, N, d), pos (B or 1, N, 2) integer (row, col) -> (B, heads, N, d)."""
        y_half, x_half = x.chunk(2, dim=-1)
        return torch.cat([self._rotate(y_half, pos[..., 0]), self._rotate(x_half, pos[..., 1])], dim=-1)

    def _rotate(self, x: Tensor, pos: Tensor) -> Tensor:
        d = x.shape[-1]
        # 1 / f^(k/d) as VGGT rounds it (f^(-k/d) differs by an ulp in float32)
        inv_freq = 1.0 / self.frequency ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
        angles = pos.to(torch.float32)[..., None] * inv_freq  # (B, N, d/2)
        angles = torch.cat([angles, angles], dim=-1)[:, None].to(x.dtype)  # (B, 1, N, d)
        x1, x2 = x.chunk(2, dim=-1)
        return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()


def patch_positions(height: int, width: int, num_special: int, *, device=None) -> Tensor:
    """(1, num_special + height·width, 2) VGGT token positions: special tokens at (0, 0), patches at
    (row + 1, col + 1), row-major."""
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    grid = torch.stack([rows, cols], dim=-1).reshape(-1, 2) + 1
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid])[None]


class Attention(nn.Module):
    """Multi-head self-attention with optional QK LayerNorm and 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int, *, qk_norm: bool = False, rope: Rope2D | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """x (B, N, C), pos (B or 1, N, 2) or None -> (B, N, C)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class LayerScale(nn.Module):
    """Per-channel residual scale `gamma`."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc2(GELU(fc1 x)): dim -> hidden -> out_dim (default dim)."""

    def __init__(self, dim: int, hidden: int, *, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x)). LayerNorm eps
    `norm_eps`: 1e-5 in VGGT's blocks, 1e-6 in DINOv2's."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        init_values: float | None = None,
        rope: Rope2D | None = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """x (B, N, C), pos (B or 1, N, 2) or None -> (B, N, C)."""
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def zero_init_output(self) -> Block:
        """Zero the attention and MLP output projections: the block starts as the identity."""
        for layer in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        return self


class PatchEmbed(nn.Module):
    """Non-overlapping conv patchify. Key: `proj`. images (B, 3, H, W) -> (B, H/p · W/p, C)."""

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.proj(x), "b c h w -> b (h w) c")

