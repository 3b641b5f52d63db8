"""DINOv2 ViT, parameter names as in facebookresearch/dinov2's torch-hub checkpoints
(`dinov2_vit{s,b,l}14[_reg]_pretrain.pth`), which VGGT's DINOv2 patch embedding shares (there under
`patch_embed.`). One implementation serves both: VGGT's aggregator here and Kaleido's auxiliary
encoder in `seqrender.models.dinov2` (sizes table and checkpoint loader).

State-dict layout: cls_token (1, 1, D), pos_embed (1, 1 + M², D), mask_token (1, D),
[register_tokens (1, R, D)], patch_embed.proj.{weight (D, 3, p, p), bias},
blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm.
Token order: [cls, registers, patches]; positions are added to cls and patches only, and the
M×M patch positions are resized bicubically to the input's patch grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from seqrender.recon.layers import Block, PatchEmbed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoV2Config:
    """ViT hyper-parameters. The position-grid resize follows the hub code: `interpolate_offset`
    > 0 resizes by scale factor (rows + offset) / M (the original models), 0 resizes to the exact
    grid (the register models and VGGT, which also antialias)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 14
    img_size: int = 518
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False


class DinoV2(nn.Module):
    """DINOv2 backbone on ImageNet-normalised images (B, 3, H, W), H and W multiples of the patch
    size: `forward` -> all final-normed tokens, `patch_tokens` -> (B, H/p · W/p, D),
    `patch_features` -> (B, H/p, W/p, D)."""

    def __init__(self, config: DinoV2Config):
        super().__init__()
        self.config = cfg = config
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, cfg.embed_dim) * 0.02)
        # unused at inference; kept (frozen) so checkpoints load strictly
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim), requires_grad=False)
        if cfg.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, init_values=1.0, norm_eps=1e-6)
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def positions(self, rows: int, cols: int) -> Tensor:
        """(1, 1 + rows·cols, D): cls position, then the patch positions resized to rows × cols."""
        cfg = self.config
        side = int(math.isqrt(self.pos_embed.shape[1] - 1))
        if (rows, cols) == (side, side):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        dtype = torch.promote_types(patch_pos.dtype, torch.float32)  # bicubic in >= float32
        grid = rearrange(patch_pos.to(dtype), "1 (h w) d -> 1 d h w", h=side)
        if cfg.interpolate_offset:
            scale = ((rows + cfg.interpolate_offset) / side, (cols + cfg.interpolate_offset) / side)
            resize = {"scale_factor": scale}
        else:
            resize = {"size": (rows, cols)}
        grid = nn.functional.interpolate(grid, mode="bicubic", antialias=cfg.interpolate_antialias, **resize)
        patch_pos = rearrange(grid, "1 d h w -> 1 (h w) d").to(self.pos_embed.dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, 1 + R + N, D) final-normed tokens [cls, regs, patches]."""
        p = self.config.patch_size
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"image height and width {tuple(images.shape[-2:])} must be multiples of patch_size={p}")
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self.positions(images.shape[-2] // p, images.shape[-1] // p)
        if self.config.num_register_tokens:
            x = torch.cat([x[:, :1], self.register_tokens.expand(len(x), -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def patch_tokens(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, H/p · W/p, D) patch tokens, row-major."""
        return self.forward(images)[:, 1 + self.config.num_register_tokens:]

    def patch_features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, H/p, W/p, D) patch features."""
        rows = images.shape[-2] // self.config.patch_size
        return rearrange(self.patch_tokens(images), "b (h w) d -> b h w d", h=rows)


def normalise_images(images: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> ImageNet-normalised (DINOv2's and VGGT's input)."""
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std
