"""Transformer pieces shared by Kaleido and 4Real-Video-V2 (DiT-style).

- `TimestepEmbedding`: t (B,) in [0, 1] -> (B, D) (sinusoidal features of 1000·t, then an MLP).
- `AdaLNModulation`: conditioning (B, D) -> n chunks (B, D), zero-initialised (adaLN-Zero).
- `modulate`, `gate`: apply (shift, scale) / gate chunks to a token grid (B, *grid, D).
- `SwiGLU`: the feed-forward layer.
- `PatchEmbed`, `unpatchify`: (B, V, C, H, W) <-> token grid (B, V, H/p, W/p, D).
- `FinalLayer`: modulated norm + zero-initialised projection back to patches.
- `PixelHead` (`pixel_head` > 0): a small conv decoder at full resolution, added to the output.
- `TransformerConfig`: the fields every model here shares (validated once).
- `output_velocity`: the network output read as `TransformerConfig.prediction`, returned as a velocity.
- `record_max_activations`: top-1 |activation| per block (Kaleido §3.2.2, massive activations).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from seqrender.flowmatch import convert_prediction

TIME_FEATURES = 256
PREDICTIONS = ("velocity", "data")


def check_choice(owner: str, name: str, value, allowed) -> None:
    """ValueError "<owner>.<name> must be one of a, b; got 'x'" unless value is allowed."""
    if value not in allowed:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


@dataclass
class TransformerConfig:
    """Fields shared by the models' configs (defaults: CPU-sized)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    num_registers: int = 1
    patch_size: int = 2
    in_channels: int = 16
    qk_norm: bool = True
    mlp_ratio: float = 8 / 3
    # What the network's last layer predicts; forward always returns the velocity ε − x. "data": the
    # clean x̂, turned into (z_t − x̂) / max(t, prediction_eps) (JiT, Li & He 2025: in pixel space a
    # data prediction keeps the low-noise steps well posed, where a velocity must recover ε = z_t / t).
    prediction: str = "velocity"
    prediction_eps: float = 0.05
    # A conv pixel decoder of this width (0: off; PixelHead): the last layer also gives `pixel_head`
    # features per pixel; three 3×3 convs read them beside the noisy input z at full resolution and
    # add a zero-initialised correction to the generated frames' output.
    pixel_head: int = 0
    # One timestep per frame (a Kaleido view, a 4RV2 grid cell) instead of one per scene (the papers):
    # every frame's adaLN reads its own t, clean frames (references, given cells) t = 0, and forward
    # accepts t per frame. Training can then draw one t per generated frame (diffusion forcing, Chen
    # et al. 2024), so a step sees as many noise levels as it has targets; a sampler passing t (B,)
    # gives every generated frame the same t, as before.
    frame_time: bool = False

    def __post_init__(self):
        owner = type(self).__name__
        check_choice(owner, "prediction", self.prediction, PREDICTIONS)
        if self.pixel_head < 0:
            raise ValueError(f"{owner}.pixel_head must be >= 0 (0: off); got {self.pixel_head}")
        if not 0 < self.prediction_eps < 1:
            raise ValueError(f"{owner}.prediction_eps must be in (0, 1); got {self.prediction_eps}")
        for name in ("layers", "hidden", "heads", "kv_heads", "patch_size", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}.{name} must be >= 1; got {getattr(self, name)}")
        if self.num_registers < 0:
            raise ValueError(f"{owner}.num_registers must be >= 0; got {self.num_registers}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"{owner}: heads={self.heads} must divide hidden={self.hidden} and "
                             f"kv_heads={self.kv_heads} must divide heads")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def output_velocity(out: Tensor, z: Tensor, t: Tensor, config: TransformerConfig) -> Tensor:
    """The velocity ε − x from the network output `out` (B, ...) at (z (B, ...), t (B,)), `out` read as
    `config.prediction` (velocity: returned as is; data: (z − out) / max(t, prediction_eps))."""
    return convert_prediction(out, z, t, source=config.prediction, target="velocity", eps=config.prediction_eps)


def time_conditioning(embed: nn.Module, t: Tensor, clean: Tensor, config: TransformerConfig) -> Tensor:
    """adaLN input: embed(t) (B, D), one per scene; with `config.frame_time` one per frame: t (B,) or
    (B, *frames), clean (B, *frames) bool (frames given clean, read at t = 0) -> (B, *frames, D)."""
    if not config.frame_time:
        return embed(t)
    per_frame = t.reshape(-1, *([1] * (clean.ndim - 1))).expand(clean.shape) if t.ndim == 1 else t
    return embed(per_frame.masked_fill(clean, 0.0).flatten()).reshape(*clean.shape, -1)


def check_time(t: Tensor, frames: tuple[int, ...], config: TransformerConfig) -> None:
    """t must be (B,), or per frame (B, *frames) with `config.frame_time`; else a one-line ValueError."""
    shapes = [frames[:1], frames] if config.frame_time else [frames[:1]]
    if tuple(t.shape) not in shapes:
        per_frame = (f" or per frame {tuple(frames)}" if config.frame_time
                     else f" (per frame only with {type(config).__name__}.frame_time)")
        raise ValueError(f"t must have shape (B,) = ({frames[0]},){per_frame}; got {tuple(t.shape)}")


def broadcast_cond(c: Tensor, x: Tensor) -> Tensor:
    """Conditioning per sample c (B, D), or per frame c (B, V, D) of x (B, V, *grid, D) ->
    (B, [V,] 1, ..., 1, D) broadcastable to x (B, *grid, D)."""
    return c.reshape(*c.shape[:-1], *([1] * (x.ndim - c.ndim)), c.shape[-1])


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, *grid, D), shift and scale (B, D) or (B, V, D) (broadcast_cond) -> x·(1 + scale) + shift."""
    return x * (1 + broadcast_cond(scale, x)) + broadcast_cond(shift, x)


def gate(x: Tensor, g: Tensor) -> Tensor:
    """x (B, *grid, D), g (B, D) or (B, V, D) (broadcast_cond) -> g·x."""
    return x * broadcast_cond(g, x)


def sinusoids(x: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """x (N,) -> (N, dim) [cos | sin] of x at dim/2 geometric frequencies 1 … 1/max_period (DiT, GLIDE)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def timestep_features(t: Tensor, dim: int = TIME_FEATURES, max_period: float = 10_000.0) -> Tensor:
    """t (B,) in [0, 1] -> (B, dim) sinusoids of 1000·t (DiT, GLIDE)."""
    return sinusoids(1000.0 * t, dim, max_period)


def grid_sincos(h: int, w: int, dim: int, device=None) -> Tensor:
    """(h, w, dim) fixed absolute position embedding of a token grid (DiT's 2-D sin-cos): the first
    dim/2 channels are sinusoids of the row index, the rest of the column index."""
    if dim % 4:
        raise ValueError(f"grid_sincos needs dim divisible by 4; got {dim}")
    rows = sinusoids(torch.arange(h, device=device), dim // 2)      # (h, dim/2)
    cols = sinusoids(torch.arange(w, device=device), dim // 2)      # (w, dim/2)
    return torch.cat([repeat(rows, "h d -> h w d", w=w), repeat(cols, "w d -> h w d", h=h)], dim=-1)


class TimestepEmbedding(nn.Module):
    """t (B,) -> (B, dim): sinusoidal features, Linear, SiLU, Linear."""

    def __init__(self, dim: int, *, features: int = TIME_FEATURES):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_features(t, self.features).to(self.mlp[0].weight.dtype))


class AdaLNModulation(nn.Module):
    """c (B, cond_dim) -> `chunks` tensors (B, dim) via SiLU + Linear, zero-initialised so every
    shift/scale/gate starts at 0 and each residual branch starts switched off (adaLN-Zero)."""

    def __init__(self, cond_dim: int, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(cond_dim, chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: Tensor) -> tuple[Tensor, ...]:
        return self.linear(nn.functional.silu(c)).chunk(self.chunks, dim=-1)


def swiglu_hidden(dim: int, mlp_ratio: float, multiple_of: int = 8) -> int:
    """Hidden width of a SwiGLU layer: mlp_ratio·dim rounded up to a multiple of `multiple_of`
    (mlp_ratio = 8/3 gives the parameter count of a 4× GELU MLP, as in LLaMA)."""
    hidden = int(mlp_ratio * dim)
    return multiple_of * math.ceil(hidden / multiple_of)


class SwiGLU(nn.Module):
    """x (..., D) -> W2 (SiLU(W1 x) ⊙ W3 x) (..., D)."""

    def __init__(self, dim: int, *, mlp_ratio: float = 8 / 3):
        super().__init__()
        hidden = swiglu_hidden(dim, mlp_ratio)
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(nn.functional.silu(a) * b)


class PatchEmbed(nn.Module):
    """(B, V, C, H, W) -> (B, V, H/p, W/p, D): non-overlapping p×p patches, one Linear."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size**2, dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"height and width {tuple(x.shape[-2:])} must be multiples of patch_size={p}")
        return self.proj(rearrange(x, "b v c (h p) (w q) -> b v h w (c p q)", p=p, q=p))


def unpatchify(x: Tensor, patch_size: int) -> Tensor:
    """(B, V, h, w, C·p·p) -> (B, V, C, h·p, w·p); inverse of PatchEmbed's rearrangement."""
    p = patch_size
    return rearrange(x, "b v h w (c p q) -> b v c (h p) (w q)", p=p, q=p)


class FinalLayer(nn.Module):
    """(B, *grid, D), c (B, D) or (B, V, D) -> (B, *grid, out): LayerNorm, modulate, zero-initialised Linear, so an
    untrained model predicts exactly 0 (DiT)."""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = AdaLNModulation(dim, dim, 2)
        self.linear = nn.Linear(dim, out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c)
        return self.linear(modulate(self.norm(x), shift, scale))


class PixelHead(nn.Module):
    """A small conv decoder on each generated frame's full-resolution grid.

    feats (n, F, H, W) from the unpatchified last layer, z (n, C, H, W) the noisy frames ->
    (n, C, H, W), added to the plain output: [feats | z] → 3×3 conv → SiLU → 3×3 conv → SiLU →
    zero-initialised 3×3 conv, so training starts from the plain model. A latent model decodes
    through the VAE's conv decoder, which carries the local image prior. In pixel space a patch's
    p×p pixels otherwise come from one linear map of one token: neighbouring patches disagree at
    their seams, and a noisy edge is never seen at pixel scale. Here every pixel sees its 7×7
    neighbourhood of z and of the token features.
    """

    def __init__(self, features: int, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(features + channels, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: Tensor, z: Tensor) -> Tensor:
        # channels-last: oneDNN's CPU convs run ~1.4x faster forward + backward in it at these widths
        # (10 frames of 32x32, 1 thread: ~12-13 against ~18-19 ms); weights and gradients keep their layout.
        return self.net(torch.cat([feats, z], dim=1).contiguous(memory_format=torch.channels_last))


def last_layer_channels(cfg: TransformerConfig) -> int:
    """Channels per pixel the last layer gives: the output's C, plus the pixel head's features."""
    return cfg.in_channels + cfg.pixel_head


def make_pixel_head(cfg: TransformerConfig) -> PixelHead | None:
    return PixelHead(cfg.pixel_head, cfg.in_channels, cfg.pixel_head) if cfg.pixel_head else None


def apply_pixel_head(head: PixelHead | None, out: Tensor, z: Tensor, where: Tensor) -> Tensor:
    """out (*lead, C + F, H, W) unpatchified last layer, z (*lead, C, H, W), where (*lead) bool (the
    generated frames) -> (*lead, C, H, W): the first C channels, plus head(other F, z) where `where`."""
    if head is None:
        return out
    channels = z.shape[-3]
    out, feats = out[..., :channels, :, :], out[..., channels:, :, :]
    mask = where.reshape(*where.shape, 1, 1, 1)
    return out.masked_scatter(mask, out[where] + head(feats[where], z[where]))


@contextlib.contextmanager
def record_max_activations(blocks: nn.ModuleList):
    """Within the context, every forward of `blocks` appends one row [max |output| of block l for
    l in blocks] to the yielded list (Kaleido §3.2.2 tracks this top-1 magnitude per layer)."""
    rows: list[list[float]] = []
    current: list[float] = []

    def hook(module, args, output):
        current.append(output.detach().abs().max().item())
        if len(current) == len(blocks):
            rows.append(current.copy())
            current.clear()

    handles = [block.register_forward_hook(hook) for block in blocks]
    try:
        yield rows
    finally:
        for handle in handles:
            handle.remove()
