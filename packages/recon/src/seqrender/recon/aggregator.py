"""VGGT-style alternating-attention aggregator over a V × T grid of frames, with zero-initialised
temporal attention after every frame and global layer (4Real-Video-V2 §3.2, App. C).

Parameter names follow facebookresearch/vggt's `Aggregator` (`patch_embed.*`, `camera_token`,
`register_token`, `frame_blocks.<i>.*`, `global_blocks.<i>.*`), so a VGGT checkpoint loads with
`load_vggt_checkpoint`; the temporal layers (`frame_temporal_blocks`, `global_temporal_blocks`)
are new and stay at their zero initialisation.

Reading chosen here: global attention mixes the V views of one timestep (VGGT applied per
timestep), temporal attention mixes the T timesteps of one (view, token) position.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from seqrender.recon.dinov2 import DinoV2, DinoV2Config, normalise_images
from seqrender.recon.layers import Block, PatchEmbed, Rope2D, patch_positions


@dataclass(frozen=True)
class AggregatorConfig:
    """Defaults are VGGT-1B's aggregator, so its released weights load into `Aggregator()` with
    `load_vggt_checkpoint`: a DINOv2-L/14 patch embedding with 4 registers (`patch_embed="dinov2"`,
    `dino_depth` 24 blocks) at 518 px, then 24 frame + 24 global blocks of width 1024, 16 heads.
    `patch_embed="conv"` is a single p×p strided conv instead (lighter, for training from scratch;
    it does not load VGGT-1B files)."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    patch_embed: str = "dinov2"
    dino_depth: int = 24
    temporal: bool = True

    def __post_init__(self):
        if self.patch_embed not in ("conv", "dinov2"):
            raise ValueError(f"patch_embed must be 'conv' or 'dinov2', got {self.patch_embed!r}")


def _first_and_rest(token: Tensor, views: int) -> Tensor:
    """(1, 2, n, C) -> (V, n, C): index 0 for the first view, 1 for the others."""
    return torch.cat([token[0, :1], token[0, 1:].expand(views - 1, -1, -1)])


class Aggregator(nn.Module):
    """Alternating frame / global attention with camera + register tokens per frame.

    forward: images (B, V, T, 3, H, W) in [0, 1], H and W multiples of patch_size ->
    list, in the order of `layers` (default all), of tokens (B, V, T, N, 2C) (frame-layer output ‖
    global-layer output, as VGGT), N = 1 + num_register_tokens + (H/p)(W/p); `patch_start_idx` marks
    the patches. Layers after the deepest requested one are not run.
    """

    def __init__(self, config: AggregatorConfig = AggregatorConfig()):
        super().__init__()
        c = config
        self.config = c
        if c.patch_embed == "conv":
            self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        else:
            self.patch_embed = DinoV2(DinoV2Config(
                embed_dim=c.embed_dim, depth=c.dino_depth, num_heads=c.num_heads, patch_size=c.patch_size,
                img_size=c.img_size, mlp_ratio=c.mlp_ratio, num_register_tokens=c.num_register_tokens,
                interpolate_offset=0.0, interpolate_antialias=True))
        self.rope = Rope2D(c.rope_freq) if c.rope_freq > 0 else None
        make = lambda: Block(c.embed_dim, c.num_heads, mlp_ratio=c.mlp_ratio, qk_norm=c.qk_norm,
                             init_values=c.init_values, rope=self.rope)
        self.frame_blocks = nn.ModuleList(make() for _ in range(c.depth))
        self.global_blocks = nn.ModuleList(make() for _ in range(c.depth))
        if c.temporal:
            self.frame_temporal_blocks = nn.ModuleList(make().zero_init_output() for _ in range(c.depth))
            self.global_temporal_blocks = nn.ModuleList(make().zero_init_output() for _ in range(c.depth))
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, c.embed_dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, c.num_register_tokens, c.embed_dim) * 1e-6)
        self.patch_start_idx = 1 + c.num_register_tokens

    def embed(self, images: Tensor) -> Tensor:
        """images (B, V, T, 3, H, W) -> initial tokens (B·V·T, N, C)."""
        b, v, t, ch, h, w = images.shape
        p = self.config.patch_size
        if ch != 3 or h % p or w % p:
            raise ValueError(f"images must be (B, V, T, 3, H, W) with H, W multiples of {p}, got {tuple(images.shape)}")
        x = rearrange(normalise_images(images), "b v t c h w -> (b v t) c h w")
        patches = self.patch_embed(x) if self.config.patch_embed == "conv" else self.patch_embed.patch_tokens(x)
        special = torch.cat([_first_and_rest(self.camera_token, v), _first_and_rest(self.register_token, v)], dim=1)
        special = repeat(special, "v n c -> (b v t) n c", b=b, t=t)
        return torch.cat([special, patches], dim=1)

    def forward(self, images: Tensor, *, layers: Sequence[int] | None = None) -> list[Tensor]:
        b, v, t, _, h, w = images.shape
        p = self.config.patch_size
        layers = list(range(self.config.depth)) if layers is None else list(layers)
        if any(not 0 <= i < self.config.depth for i in layers):
            raise ValueError(f"layers must lie in [0, {self.config.depth}), got {list(layers)}")
        x = self.embed(images)
        pos = patch_positions(h // p, w // p, self.patch_start_idx, device=images.device)
        pos_global = pos.repeat(1, v, 1)
        outputs = {}
        for i in range(max(layers, default=-1) + 1):
            x = self.frame_blocks[i](x, pos)
            x = self._temporal(x, "frame", i, v, t)
            frame_out = x
            x = rearrange(x, "(b v t) n c -> (b t) (v n) c", v=v, t=t)
            x = self.global_blocks[i](x, pos_global)
            x = rearrange(x, "(b t) (v n) c -> (b v t) n c", t=t, v=v)
            x = self._temporal(x, "global", i, v, t)
            if i in layers:
                outputs[i] = rearrange(torch.cat([frame_out, x], dim=-1), "(b v t) n c -> b v t n c", v=v, t=t)
        return [outputs[i] for i in layers]

    def _temporal(self, x: Tensor, kind: str, i: int, v: int, t: int) -> Tensor:
        """Attention across the T timesteps of each (view, token). x: (B·V·T, N, C)."""
        if not self.config.temporal:
            return x
        block = getattr(self, f"{kind}_temporal_blocks")[i]
        n = x.shape[1]
        x = rearrange(x, "(bv t) n c -> (bv n) t c", t=t)
        return rearrange(block(x), "(bv n) t c -> (bv t) n c", n=n)


def load_vggt_checkpoint(model: nn.Module, path: str | os.PathLike, *, prefix: str = "aggregator.") -> list[str]:
    """Load a local VGGT checkpoint into `model` (never downloads): the `Aggregator`, or a VGGT head
    with its prefix ("depth_head.", "camera_head.").

    The file holds either a whole VGGT state dict (the part's keys under `prefix`, others ignored)
    or the part's alone. Every aggregator key must match a parameter of `model` in name and
    shape, and every parameter of `model` except the temporal layers must be present; otherwise
    raises ValueError. Returns the keys left at initialisation (the zero-initialised temporal layers).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.state_dict()
    temporal = {k for k in own if k.startswith(("frame_temporal_blocks.", "global_temporal_blocks."))}
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state) - temporal)
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unexpected or missing or wrong:
        raise ValueError(
            f"checkpoint {path} does not match the aggregator: unexpected {unexpected[:5]}, missing {missing[:5]},"
            f" shape mismatch {wrong[:5]}"
        )
    model.load_state_dict({**own, **state}, strict=True)
    return sorted(temporal - set(state))
