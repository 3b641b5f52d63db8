"""DINOv2 ViT (Kaleido's auxiliary feature encoder), parameter names as in facebookresearch/dinov2's
torch-hub checkpoints (`dinov2_vit{s,b,l}14[_reg]_pretrain.pth`), so those files load unchanged.

State-dict layout: cls_token (1, 1, D), pos_embed (1, 1 + M², D), mask_token (1, D),
[register_tokens (1, R, D)], patch_embed.proj.{weight (D, 3, p, p), bias},
blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm.
Token order: [cls, registers, patches]; positions are added to cls and patches only, and the
M×M patch positions are resized bicubically to the input's patch grid.

Weights are only ever read from a local file (`load_dinov2`); nothing is downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import load_file
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoV2Config:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 14
    img_size: int = 518
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False


def _registers(**kw) -> dict:
    return {"num_register_tokens": 4, "interpolate_offset": 0.0, "interpolate_antialias": True, **kw}


DINOV2_SIZES = {
    "dinov2_vits14": DinoV2Config(embed_dim=384, depth=12, num_heads=6),
    "dinov2_vitb14": DinoV2Config(embed_dim=768, depth=12, num_heads=12),
    "dinov2_vitl14": DinoV2Config(embed_dim=1024, depth=24, num_heads=16),
    "dinov2_vits14_reg": DinoV2Config(**_registers(embed_dim=384, depth=12, num_heads=6)),
    "dinov2_vitb14_reg": DinoV2Config(**_registers(embed_dim=768, depth=12, num_heads=12)),
    "dinov2_vitl14_reg": DinoV2Config(**_registers(embed_dim=1024, depth=24, num_heads=16)),
}


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class DinoAttention(nn.Module):
    """(B, N, D) -> (B, N, D): fused qkv (q, k, v stacked, heads split inside each), SDPA, proj."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        o = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))


class DinoMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class DinoBlock(nn.Module):
    """Pre-norm ViT block with LayerScale: x + ls1(attn(norm1 x)), then + ls2(mlp(norm2 x))."""

    def __init__(self, cfg: DinoV2Config):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchProjection(nn.Module):
    """(B, 3, H, W) -> (B, H/p · W/p, D) by a stride-p convolution (row-major patches)."""

    def __init__(self, cfg: DinoV2Config):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


class DinoV2(nn.Module):
    """DINOv2 backbone: images (B, 3, H, W), ImageNet-normalised, H and W multiples of the patch
    size -> normalised patch features (B, H/p, W/p, D) via `patch_features`."""

    def __init__(self, config: DinoV2Config):
        super().__init__()
        self.config = cfg = config
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = PatchProjection(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, cfg.embed_dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))  # kept for checkpoint compatibility
        if cfg.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, cfg.embed_dim))
        self.blocks = nn.ModuleList(DinoBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def positions(self, rows: int, cols: int) -> Tensor:
        """(1, 1 + rows·cols, D): cls position, then the patch positions resized to rows × cols."""
        cfg = self.config
        side = int(math.isqrt(self.pos_embed.shape[1] - 1))
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (rows, cols) == (side, side):
            return self.pos_embed
        dtype = torch.promote_types(patch_pos.dtype, torch.float32)  # bicubic in >= float32
        grid = rearrange(patch_pos.to(dtype), "1 (h w) d -> 1 d h w", h=side)
        if cfg.interpolate_offset:
            scale = ((rows + cfg.interpolate_offset) / side, (cols + cfg.interpolate_offset) / side)
            grid = nn.functional.interpolate(grid, scale_factor=scale, mode="bicubic",
                                             antialias=cfg.interpolate_antialias)
        else:
            grid = nn.functional.interpolate(grid, size=(rows, cols), mode="bicubic",
                                             antialias=cfg.interpolate_antialias)
        patch_pos = rearrange(grid, "1 d h w -> 1 (h w) d").to(self.pos_embed.dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, 1 + R + N, D) final-normed tokens [cls, regs, patches]."""
        p = self.config.patch_size
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"image height and width {tuple(images.shape[-2:])} must be multiples of patch_size={p}")
        rows, cols = images.shape[-2] // p, images.shape[-1] // p
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.positions(rows, cols)
        if self.config.num_register_tokens:
            x = torch.cat([x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def patch_features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, H/p, W/p, D) patch features."""
        p = self.config.patch_size
        tokens = self.forward(images)[:, 1 + self.config.num_register_tokens:]
        return rearrange(tokens, "b (h w) d -> b h w d", h=images.shape[-2] // p)


def normalise_images(images: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local .pth/.pt (torch.load, weights only) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINOv2 checkpoint not found: {path} (weights are never downloaded)")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in (".pth", ".pt"):
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"DINOv2 checkpoint must end in .pth, .pt or .safetensors; got {path.name}")


def load_dinov2(config: DinoV2Config | str, path: str | Path | None = None) -> DinoV2:
    """DINOv2 for `config` (a DinoV2Config or a DINOV2_SIZES name) with weights from the local file
    `path` in the hub's key layout, or randomly initialised when path is None.

    Every checkpoint tensor must match a parameter; only `mask_token` (unused at inference) may be
    absent from the file.
    """
    if isinstance(config, str):
        if config not in DINOV2_SIZES:
            raise ValueError(f"DINOv2 name must be one of {', '.join(DINOV2_SIZES)}; got {config!r}")
        config = DINOV2_SIZES[config]
    model = DinoV2(config)
    if path is not None:
        result = model.load_state_dict(read_state_dict(path), strict=False)
        missing = [k for k in result.missing_keys if k != "mask_token"]
        if missing or result.unexpected_keys:
            raise ValueError(f"checkpoint {path} does not fit {config}: missing {missing}, "
                             f"unexpected {result.unexpected_keys}")
    return model
