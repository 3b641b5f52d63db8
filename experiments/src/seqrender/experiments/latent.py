"""Latent-space training batches: the paper's Kaleido works on VAE latents (8× spatial compression,
16 channels; SPEC §1), not pixels.

`with_latents(draw, cfg, device)` wraps a batch function `draw(step, indices) -> TrainBatch`: it
encodes the pixel batch with a frozen local AutoencoderKL (posterior mean), keeps the RGB images
(for the DINOv2 features of the reference views), rescales the intrinsics to the latent grid and
draws latent-shaped noise from the stream keyed (seed, step, sample, 1), so a resumed or DDP run
still draws exactly what one uninterrupted run draws. With `vae.cache` the latents come from a
precomputed, resumable cache (`latent_cache.py`) instead of the encoder. Evaluation (`to_latent_batch`) encodes the
held-out views, samples latents and decodes them to images for the metrics.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from seqrender.experiments.batching import TrainBatch
from seqrender.experiments.config import RunConfig
from seqrender.experiments.data.seeding import generator_from
from seqrender.experiments.latent_cache import LatentCache, cache_key
from seqrender.models.vae import AutoencoderKL

NOISE_STREAM = 1  # fourth key of the per-sample generator: latent noise


def load_vae(cfg: RunConfig, device: torch.device) -> AutoencoderKL | None:
    """The frozen VAE of `cfg.vae` on `device` (None when latent training is off); checks that the
    model's in_channels equal the VAE's latent channels."""
    if not cfg.vae.enabled:
        return None
    vae = AutoencoderKL.from_pretrained_local(cfg.vae.path).requires_grad_(False).eval().to(device)
    channels = getattr(cfg.model.config, "in_channels", None)
    if channels != vae.config.latent_channels:
        raise ValueError(f"model.in_channels={channels} must equal the VAE's latent_channels="
                         f"{vae.config.latent_channels} ({cfg.vae.path})")
    return vae


@torch.no_grad()
def encode_batch(batch: TrainBatch, vae: AutoencoderKL, *, seed: int, step: int, indices: range,
                 cache: LatentCache | None = None) -> TrainBatch:
    """Pixel batch (x (B, V, 3, H, W) in [-1, 1]) -> latent batch (x, noise (B, V, C, H/f, W/f)),
    images (B, V, 3, H, W) in [0, 1], intrinsics in latent pixels. With a `cache` the latents of
    the batch's (scene, frames) are read from it instead of encoded."""
    latents = vae.encode(batch.x) if cache is None else cache.latents(batch.scene, batch.frames).to(batch.x)
    noise = torch.stack([torch.randn(latents.shape[1:], generator=generator_from(seed, step, g, NOISE_STREAM))
                         for g in indices]).to(latents.device)
    return replace(batch, x=latents, noise=noise, images=(batch.x + 1) / 2,
                   intrinsics=latent_intrinsics(batch.intrinsics, vae.config.downsample_factor))


def latent_intrinsics(intrinsics: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., 3, 3) pixel intrinsics of the image grid -> those of the latent grid (1/factor per axis)."""
    scale = torch.tensor([1 / factor, 1 / factor, 1.0], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * scale[:, None]


def latent_noise(noise: torch.Tensor, factor: int, channels: int) -> torch.Tensor:
    """Pixel noise (..., 3, H, W) -> latent noise (..., channels, H/f, W/f): each f×f block of the
    3 channels becomes 3·f² i.i.d. channels (pixel unshuffle), the first `channels` are kept. Still
    standard normal and a function of the pixel noise, so evaluation items keep their own noise."""
    if 3 * factor**2 < channels:
        raise ValueError(f"latent noise from pixel noise needs 3·f² >= latent channels ({3 * factor**2} < {channels})")
    lead = noise.shape[:-3]
    blocks = torch.nn.functional.pixel_unshuffle(noise.reshape(-1, *noise.shape[-3:]), factor)
    return blocks[:, :channels].reshape(*lead, channels, *blocks.shape[-2:])


@torch.no_grad()
def to_latent_batch(batch, x: torch.Tensor, vae: AutoencoderKL):
    """An evaluation batch in latent space: (batch with latent-grid intrinsics, latents of x
    (B, V, C, h, w), latent noise from the batch's pixel noise)."""
    f = vae.config.downsample_factor
    latents = vae.encode(x)
    noise = latent_noise(batch.noise, f, latents.shape[-3]).to(latents)
    return replace(batch, intrinsics=latent_intrinsics(batch.intrinsics, f)), latents, noise


def with_latents(draw: Callable, cfg: RunConfig, device: torch.device, data=None) -> Callable:
    """`draw` itself when cfg.vae is off, else draw(step, indices) on `device`, then encoded (or its
    latents read from the precomputed `vae.cache` of the training `data`, built first if needed)."""
    vae = load_vae(cfg, device)
    if vae is None:
        return draw
    cache = None
    if cfg.vae.cache:
        cache = LatentCache(Path(cfg.vae.cache), data, vae, cache_key(cfg, data), progress=cfg.trainer.progress)
    return lambda step, indices: encode_batch(draw(step, indices).to(device), vae, seed=cfg.seed, step=step,
                                              indices=indices, cache=cache)
