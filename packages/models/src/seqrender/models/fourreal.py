"""4Real-Video-V2's generator (papers/4real-video-v2-*.txt §3.1): a video DiT over a V × T grid.

Tokens: patches of the noised latent grid (B, V, T, C, H, W) (row v = a fixed-view video, column
t = a freeze-time video). Conditioning: the given first-row video (view 0 over time) and/or
first-column video (time 0 over views) are patch-embedded (with a "given" indicator channel) and
ADDED to the noised tokens of the grid cells they fill. Positions: the 4-D index (v, t, h, w) is
collapsed to (v·T_max + t, h, w) and encoded with axial 3-D RoPE (the grid read as one long video,
as a pretrained video model expects). No camera poses. One timestep per scene via adaLN-Zero (with
`frame_time`: one per grid cell, given cells at t = 0).

Each block: view-time attention → SwiGLU. `attention` picks the pattern (seqrender.attention):
"fused" (one layer where (v, t) attends to every (v', t') with v' = v or t' = t, backend
selectable), or the paper's baselines "sequential" (cross-view then cross-time) and "parallel"
(both branches, merged by a zero-initialised synchronisation layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from seqrender.attention.variants import ParallelViewTimeAttention, SequentialViewTimeAttention
from seqrender.attention.viewtime import BACKENDS, ViewTimeAttention
from seqrender.models.blocks import (AdaLNModulation, FinalLayer, PatchEmbed, SwiGLU, TimestepEmbedding,
                                     TransformerConfig, apply_pixel_head, check_choice, check_time,
                                     gate, time_conditioning,
                                     last_layer_channels, make_pixel_head, modulate, output_velocity,
                                     unpatchify)
from seqrender.posenc import BlockTransform, Rotary, rope_angles

ATTENTION_PATTERNS = ("fused", "sequential", "parallel")


@dataclass
class FourRealConfig(TransformerConfig):
    """4Real-Video-V2 generator hyper-parameters (defaults: CPU-sized)."""

    attention: str = "fused"
    backend: str = "auto"  # fused pattern only: seqrender.attention.viewtime BACKENDS
    max_times: int = 64  # T_max of the collapsed index v·T_max + t
    rope_base: float = 10_000.0

    def __post_init__(self):
        super().__post_init__()
        check_choice("FourRealConfig", "attention", self.attention, ATTENTION_PATTERNS)
        check_choice("FourRealConfig", "backend", self.backend, BACKENDS)
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"FourRealConfig: head_dim = hidden/heads = {self.head_dim} must be even and >= 6 "
                             "(3-D RoPE needs a channel pair per axis)")


def rope_bands(head_dim: int) -> tuple[int, int, int]:
    """Channel pairs of 3-D RoPE per axis (time, h, w): h and w a third each, time the rest."""
    pairs = head_dim // 2
    return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def collapsed_positions(views: int, times: int, height: int, width: int, max_times: int, *, device=None) -> Tensor:
    """(V·T·h·w, 3) positions (v·T_max + t, h, w) in token order (v, t, h, w)."""
    v, t, h, w = torch.meshgrid(*(torch.arange(n, device=device) for n in (views, times, height, width)),
                                indexing="ij")
    return torch.stack([v * max_times + t, h, w], dim=-1).reshape(-1, 3).float()


def make_attention(cfg: FourRealConfig) -> nn.Module:
    """The view-time attention layer of `cfg.attention`; every pattern maps (B, V, T, h, w, D) to
    the attention output of the same shape."""
    dim, heads, kv = cfg.hidden, cfg.heads, cfg.kv_heads
    options = dict(num_registers=cfg.num_registers, qk_norm=cfg.qk_norm)
    if cfg.attention == "fused":
        return ViewTimeAttention(dim, heads, kv, backend=cfg.backend, **options)
    layer = SequentialViewTimeAttention if cfg.attention == "sequential" else ParallelViewTimeAttention
    return layer(dim, heads, kv, **options)


class FourRealBlock(nn.Module):
    """x (B, V, T, h, w, D), c (B, D) -> same: view-time attention → SwiGLU, adaLN-Zero gated.
    `rope` holds the attention's transform keyword(s) (see FourReal.rope)."""

    def __init__(self, cfg: FourRealConfig):
        super().__init__()
        dim = cfg.hidden
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(2))
        self.attn = make_attention(cfg)
        self.mlp = SwiGLU(dim, mlp_ratio=cfg.mlp_ratio)
        self.modulation = AdaLNModulation(dim, dim, 6)

    def forward(self, x: Tensor, c: Tensor, *, rope: dict) -> Tensor:
        mods = self.modulation(c)
        x = x + gate(self.attn(modulate(self.norms[0](x), mods[0], mods[1]), **rope), mods[2])
        return x + gate(self.mlp(modulate(self.norms[1](x), mods[3], mods[4])), mods[5])


class FourReal(nn.Module):
    """4D (multi-view video) generation on a V × T grid by rectified flow."""

    def __init__(self, config: FourRealConfig):
        super().__init__()
        self.config = cfg = config
        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.hidden, cfg.patch_size)
        self.cond_embed = PatchEmbed(cfg.in_channels + 1, cfg.hidden, cfg.patch_size)
        self.time_embed = TimestepEmbedding(cfg.hidden)
        self.blocks = nn.ModuleList(FourRealBlock(cfg) for _ in range(cfg.layers))
        self.final = FinalLayer(cfg.hidden, last_layer_channels(cfg) * cfg.patch_size**2)
        self.pixel_head = make_pixel_head(cfg)
        for embed in (self.patch_embed, self.cond_embed):
            nn.init.xavier_uniform_(embed.proj.weight)
            nn.init.zeros_(embed.proj.bias)

    def rope_transform(self, positions: Tensor) -> BlockTransform:
        """3-D RoPE for positions (B' or 1, N, 3) = (v·T_max + t, h, w): acts on (B', heads, N, d)."""
        angles = rope_angles(positions, rope_bands(self.config.head_dim), base=self.config.rope_base)
        return BlockTransform(rotary=Rotary(angles))

    def rope(self, batch: int, views: int, times: int, height: int, width: int, device) -> dict:
        """Transform keyword(s) for the attention pattern, every token at its collapsed position
        (v·T_max + t, h, w). Fused: one transform over the grid, tokens (v, t, s). Sequential and
        parallel: cross-view sequences (batch (b, t), tokens (v, s)) and cross-time sequences
        (batch (b, v), tokens (t, s)) each keep their own absolute positions — RoPE alone is
        relative, but the register tokens (appended unrotated) see absolute positions."""
        if times > self.config.max_times:
            raise ValueError(f"T={times} exceeds FourRealConfig.max_times={self.config.max_times}")
        pos = collapsed_positions(views, times, height, width, self.config.max_times, device=device)
        if self.config.attention == "fused":
            return {"transform": self.rope_transform(pos[None])}
        grid = rearrange(pos, "(v t s) c -> v t s c", v=views, t=times)
        per_view = repeat(grid, "v t s c -> (b t) (v s) c", b=batch)
        per_time = repeat(grid, "v t s c -> (b v) (t s) c", b=batch)
        return {"view_transform": self.rope_transform(per_view), "time_transform": self.rope_transform(per_time)}

    def condition(self, z: Tensor, row: Tensor | None, column: Tensor | None) -> Tensor:
        """Conditioning grid (B, V, T, C + 1, H, W): the given videos in row 0 / column 0 and a
        channel that is 1 where a cell is given, zeros elsewhere."""
        batch, views, times, channels, height, width = z.shape
        grid = z.new_zeros(batch, views, times, channels + 1, height, width)
        if row is not None:
            self._check("row", row, (batch, times, channels, height, width))
            grid[:, 0, :, :channels], grid[:, 0, :, channels] = row, 1.0
        if column is not None:
            self._check("column", column, (batch, views, channels, height, width))
            grid[:, :, 0, :channels], grid[:, :, 0, channels] = column, 1.0
        return grid

    def forward(self, z: Tensor, t: Tensor, *, row: Tensor | None = None, column: Tensor | None = None) -> Tensor:
        """Predict the velocity ε − x of the whole grid (the network predicts `config.prediction`).

        z (B, V, T, C, H, W): noised latent grid; t (B,) in [0, 1], or per cell (B, V, T) with
        `config.frame_time` (given cells read as t = 0); row (B, T, C, H, W): the given
        fixed-view video (view 0) or None; column (B, V, C, H, W): the given freeze-time video
        (time 0) or None. Returns (B, V, T, C, H, W).
        """
        self._check("z", z, (*z.shape[:3], self.config.in_channels, *z.shape[-2:]))
        batch, views, times = z.shape[:3]
        check_time(t, (batch, views, times), self.config)
        cond = self.condition(z, row, column)
        flat = "b v t c h w -> b (v t) c h w"
        tokens = self.patch_embed(rearrange(z, flat)) + self.cond_embed(rearrange(cond, flat))
        tokens = rearrange(tokens, "b (v t) h w d -> b v t h w d", v=views)
        rope = self.rope(batch, views, times, tokens.shape[3], tokens.shape[4], z.device)
        generated = cond[:, :, :, -1, 0, 0] == 0                                # (B, V, T): not given
        c = time_conditioning(self.time_embed, t, ~generated, self.config)      # (B, D) or per cell (B, V, T, D)
        for block in self.blocks:
            tokens = block(tokens, c, rope=rope)
        cells = rearrange(c, "b v t d -> b (v t) d") if c.ndim == 4 else c     # (B, [V·T,] D)
        out = self.final(rearrange(tokens, "b v t h w d -> b (v t) h w d"), cells)
        out = rearrange(unpatchify(out, self.config.patch_size), "b (v t) c h w -> b v t c h w", v=views)
        out = apply_pixel_head(self.pixel_head, out, z, generated)            # (B, V, T, C, H, W)
        return output_velocity(out, z, t, self.config)

    @staticmethod
    def _check(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(x.shape)}")
