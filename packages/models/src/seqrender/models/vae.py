"""AutoencoderKL: the image VAE of the SD3 / FLUX family (Kaleido's latent space: 8× spatial
compression, 16 channels), with module names that match diffusers' `AutoencoderKL` state dict, so
a local `diffusion_pytorch_model.safetensors` loads strictly. Nothing is ever downloaded.

Layout (C_i = block_out_channels[i], L = layers_per_block, n = len(block_out_channels)):

    encoder.conv_in -> down_blocks[i].resnets[0..L-1] (+ downsamplers.0 unless last)
            -> mid_block (resnets.0, attentions.0, resnets.1) -> conv_norm_out -> SiLU -> conv_out (2·latent)
    quant_conv (optional 1×1) -> mean, logvar
    post_quant_conv (optional 1×1) -> decoder.conv_in -> mid_block
            -> up_blocks[i].resnets[0..L] (+ upsamplers.0 unless last) -> conv_norm_out -> SiLU -> conv_out

Images are in [-1, 1]; latents are `(mean − shift_factor) · scaling_factor` (diffusers pipelines'
convention), spatially 2^(n−1) = 8× smaller for n = 4.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from seqrender.models.weights import check_state_dict

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
# diffusers renamed the mid-block attention's parameters; old checkpoints still carry these names
_DEPRECATED_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


@dataclass(frozen=True)
class VAEConfig:
    """Defaults are FLUX.1's VAE (SD3's differs only in scaling 1.5305 and shift 0.0609)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_block_add_attention: bool = True
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False
    scaling_factor: float = 0.3611
    shift_factor: float = 0.1159

    def __post_init__(self) -> None:
        if not self.block_out_channels or any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"block_out_channels must be non-empty multiples of norm_num_groups="
                             f"{self.norm_num_groups}, got {self.block_out_channels}")
        if self.layers_per_block < 1 or self.latent_channels < 1:
            raise ValueError("layers_per_block and latent_channels must be >= 1")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers(cls, config: dict) -> "VAEConfig":
        """From a diffusers `config.json` dict, read as diffusers reads it: a missing key takes
        `diffusers.AutoencoderKL`'s default (DIFFUSERS_DEFAULTS: e.g. use_quant_conv True, 4 latent
        channels), a null `shift_factor` means no shift (0), any other null is an error; unknown
        keys such as `_class_name` are ignored. Only the plain KL architecture is accepted."""
        blocks = set(config.get("down_block_types", ["DownEncoderBlock2D"])) | set(
            config.get("up_block_types", ["UpDecoderBlock2D"]))
        if blocks - {"DownEncoderBlock2D", "UpDecoderBlock2D"} or config.get("act_fn", "silu") != "silu":
            raise ValueError(f"only DownEncoderBlock2D/UpDecoderBlock2D blocks with act_fn 'silu' are supported, "
                             f"got {sorted(blocks)}, act_fn {config.get('act_fn')!r}")
        values = {**DIFFUSERS_DEFAULTS, **{k: v for k, v in config.items() if k in DIFFUSERS_DEFAULTS}}
        if values["shift_factor"] is None:
            values["shift_factor"] = 0.0
        nulls = sorted(k for k, v in values.items() if v is None)
        if nulls:
            raise ValueError(f"VAE config.json: {', '.join(nulls)} must not be null")
        values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)


# diffusers.AutoencoderKL.__init__ defaults (what a config.json without the key means there)
DIFFUSERS_DEFAULTS = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(64,),
                          layers_per_block=1, norm_num_groups=32, mid_block_add_attention=True,
                          use_quant_conv=True, use_post_quant_conv=True, scaling_factor=0.18215,
                          shift_factor=None)


class ResnetBlock(nn.Module):
    """diffusers ResnetBlock2D without time embedding: x (B, C_in, H, W) -> (B, C_out, H, W),
    out = shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H·W positions, with pre-GroupNorm and a residual:
    x (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.group_norm(x), "b c h w -> b (h w) c")
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return x + rearrange(self.to_out[0](out), "b (h w) c -> b c h w", h=h, w=w)


class MidBlock(nn.Module):
    """resnets.0 -> attentions.0 (optional) -> resnets.1, all at C channels."""

    def __init__(self, channels: int, groups: int, *, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([AttentionBlock(channels, groups)] if attention else [])

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class Downsample(nn.Module):
    """Stride-2 3×3 conv after zero padding of one pixel on the right and bottom only:
    (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2× then a 3×3 conv: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResolutionBlock(nn.Module):
    """`resnets` then an optional resampler, stored as `downsamplers.0` or `upsamplers.0`."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, *,
                 resample: str | None):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups)
                                      for i in range(layers)])
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample(out_channels)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample(out_channels)])
        self.resample = resample

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.resample == "down":
            x = self.downsamplers[0](x)
        elif self.resample == "up":
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, 2·latent_channels, H/f, W/f) moments (mean, logvar)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            ResolutionBlock(chans[max(i - 1, 0)], c, cfg.layers_per_block, groups,
                            resample="down" if i < len(chans) - 1 else None)
            for i, c in enumerate(chans)])
        self.mid_block = MidBlock(chans[-1], groups, attention=cfg.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, chans[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(chans[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, out_channels, h·f, w·f)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans, groups = cfg.block_out_channels[::-1], cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, chans[0], 3, padding=1)
        self.mid_block = MidBlock(chans[0], groups, attention=cfg.mid_block_add_attention)
        self.up_blocks = nn.ModuleList([
            ResolutionBlock(chans[max(i - 1, 0)], c, cfg.layers_per_block + 1, groups,
                            resample="up" if i < len(chans) - 1 else None)
            for i, c in enumerate(chans)])
        self.conv_norm_out = nn.GroupNorm(groups, chans[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(chans[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        moments = 2 * config.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if config.use_quant_conv else None
        self.post_quant_conv = (nn.Conv2d(config.latent_channels, config.latent_channels, 1)
                                if config.use_post_quant_conv else None)

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) in [-1, 1] -> posterior mean and log-variance, each (B, latent, H/f, W/f)
        (log-variance clamped to [−30, 20] as in diffusers)."""
        f = self.config.downsample_factor
        if images.shape[-2] % f or images.shape[-1] % f:
            raise ValueError(f"image height and width must be multiples of {f}, got {tuple(images.shape[-2:])}")
        h = self.encoder(images)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, images: Tensor, *, generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """Images (..., 3, H, W) in [-1, 1] -> latents (..., latent, H/f, W/f), shifted and scaled.
        The posterior mean by default; a draw from it with `sample=True`."""
        lead = images.shape[:-3]
        mean, logvar = self.moments(images.reshape(-1, *images.shape[-3:]))
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            mean = mean + torch.exp(0.5 * logvar) * noise
        latents = (mean - self.config.shift_factor) * self.config.scaling_factor
        return latents.reshape(*lead, *latents.shape[1:])

    def decode(self, latents: Tensor) -> Tensor:
        """Latents (..., latent, h, w) as returned by `encode` -> images (..., 3, h·f, w·f) in ~[-1, 1]."""
        lead = latents.shape[:-3]
        z = latents.reshape(-1, *latents.shape[-3:]) / self.config.scaling_factor + self.config.shift_factor
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        images = self.decoder(z)
        return images.reshape(*lead, *images.shape[1:])

    @classmethod
    def from_pretrained_local(cls, path: str | Path, config: VAEConfig | None = None) -> "AutoencoderKL":
        """Load diffusers-format weights from local files only: `path` is a folder holding
        `diffusion_pytorch_model.safetensors` (+ `config.json`, used when `config` is None) or a
        `.safetensors` file (then `config` is required). Every parameter must be present and every
        tensor used (strict), with matching shapes."""
        path = Path(path)
        weights = path / WEIGHTS_NAME if path.is_dir() else path
        if not weights.is_file():
            raise FileNotFoundError(f"VAE weights not found: {weights} (weights are never downloaded; "
                                    f"pass a local folder with {WEIGHTS_NAME} or a .safetensors file)")
        if config is None:
            config_path = weights.parent / CONFIG_NAME
            if not config_path.is_file():
                raise FileNotFoundError(f"VAE config not found: {config_path}; pass config=VAEConfig(...)")
            config = VAEConfig.from_diffusers(json.loads(config_path.read_text()))
        model = cls(config)
        model.load_state_dict_strict(read_safetensors(weights), source=str(weights))
        return model

    def load_state_dict_strict(self, state: dict[str, Tensor], *, source: str) -> None:
        """Load diffusers-named tensors (old attention names accepted), failing with the first
        missing, unexpected or mis-shaped keys named."""
        state = {_rename_deprecated(k): v for k, v in state.items()}
        check_state_dict(self.state_dict(), state, source=source, target=self.config)
        self.load_state_dict(state, strict=True)


def _rename_deprecated(key: str) -> str:
    parts = key.split(".")
    if "attentions" in parts and len(parts) >= 2 and parts[-2] in _DEPRECATED_ATTENTION_NAMES:
        return ".".join(parts[:-2] + [_DEPRECATED_ATTENTION_NAMES[parts[-2]], parts[-1]])
    return key


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a local .safetensors file, on the CPU, as float32."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"cannot read safetensors file {path}: {err}") from err
