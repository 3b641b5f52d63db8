"""Transformer layers with VGGT / DINOv2 parameter names (so their checkpoints load strictly).

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
        inv_freq = self.frequency ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
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
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        init_values: float | None = None,
        rope: Rope2D | None = None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
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


class DinoV2(nn.Module):
    """DINOv2 ViT with registers as VGGT's patch embedding (keys `cls_token`, `pos_embed`,
    `register_tokens`, `mask_token`, `patch_embed.proj`, `blocks.<i>`, `norm`).

    images (B, 3, H, W) -> normalised patch tokens (B, H/p · W/p, C). The learned position grid
    (img_size/p square) is resized bicubically (antialiased) when the patch grid differs.
    """

    def __init__(self, *, img_size: int, patch_size: int, dim: int, depth: int, num_heads: int,
                 num_register_tokens: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, init_values=1.0) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.num_register_tokens = num_register_tokens

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self._pos_embed(h, w)
        x = torch.cat([x[:, :1], self.register_tokens.expand(len(x), -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens :]

    def _pos_embed(self, h: int, w: int) -> Tensor:
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) != (self.grid, self.grid):
            grid = rearrange(grid, "1 (h w) c -> 1 c h w", h=self.grid)
            grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", antialias=True).to(cls_pos.dtype)
            grid = rearrange(grid, "1 c h w -> 1 (h w) c")
        return torch.cat([cls_pos, grid], dim=1)
