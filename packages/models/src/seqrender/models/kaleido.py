"""Kaleido (papers/kaleido-*.txt §3.2): a decoder-only rectified-flow transformer over V frames.

Tokens are patches of clean reference latents and noised target latents (the caller writes the
clean latents into the reference frames), plus a learned reference/target embedding and, with
`absolute_positions`, DiT's fixed 2-D sin-cos code of each patch's place in its image. One timestep
per scene enters every block through adaLN-Zero (with `frame_time`: one per frame, references at
t = 0, so training may noise each target frame to its own level). Each block: spatial attention
(within a frame) → temporal window attention (K×K windows across all frames) → SwiGLU; GQA and
register tokens in every attention. Positions come from one `SceneEncoding` (posenc registry): the
model builds ONE spatial and ONE temporal transform per forward, shared by all blocks.

Camera frame. With `pose_frame="first_reference"` (default) extrinsics are first re-expressed in the
camera frame of each scene's first active reference view (E_i ← E_i·E_ref⁻¹) and then translations
are normalised to max ‖t‖ = 1 over the active views (= the largest camera-centre distance to that
reference camera; views cut off by frame_mask never enter either), so the whole model is invariant to any change of world frame E_i → E_i·G, G ∈ SE(3), registers included.
With `pose_frame="world"` the poses are normalised as given (the paper's wording); GTA's logits are
still relative, but the registers and the max-‖t‖ normalisation see the absolute frame, so only
rotations about the world origin leave the output unchanged, and only with `num_registers=0`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from seqrender.attention import SpatialAttention, WindowAttention, window_partition
from seqrender.attention.window import check_frame_mask
from seqrender.models import registry
from seqrender.models.dinov2 import DINOV2_SIZES, load_dinov2, normalise_images
from seqrender.models.blocks import (AdaLNModulation, FinalLayer, PatchEmbed, SwiGLU, TimestepEmbedding,
                                     TransformerConfig, apply_pixel_head, check_choice, check_time,
                                     gate, grid_sincos, time_conditioning,
                                     last_layer_channels, make_pixel_head, modulate, output_velocity,
                                     unpatchify)
from seqrender.posenc import full_precision, grid_angles, invert_se3, normalise_translations

POSE_FRAMES = ("first_reference", "world")


@dataclass
class KaleidoConfig(TransformerConfig):
    """Kaleido hyper-parameters (defaults: a CPU-sized model; paper sizes live in sizes.py)."""

    window: int = 2
    pose_frame: str = "first_reference"
    aux_encoder: Optional[str] = None  # a DINOv2 name (dinov2.DINOV2_SIZES), e.g. "dinov2_vitb14"
    aux_checkpoint: Optional[str] = None  # local hub-format weights for it; None = random init
    # U-ViT (Bao et al. 2023, §3): a 3×3 conv on the unpatchified output, so neighbouring patches'
    # pixels can agree across their seams; a zero-initialised residual, so it starts as the identity.
    output_conv: bool = False
    # DiT's fixed 2-D sin-cos embedding of each token's patch position, added to the patch tokens.
    # GTA's logits see only offsets between tokens, so without it a token's place in the image (its
    # ray in its camera) can only be inferred from where the frame ends.
    absolute_positions: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.window < 1:
            raise ValueError(f"KaleidoConfig.window must be >= 1; got {self.window}")
        check_choice("KaleidoConfig", "pose_frame", self.pose_frame, POSE_FRAMES)
        if self.absolute_positions and self.hidden % 4:
            raise ValueError(f"KaleidoConfig.absolute_positions needs hidden divisible by 4 (a sin and a cos "
                             f"per frequency of each image axis); got hidden={self.hidden}")
        if self.aux_encoder is not None:
            check_choice("KaleidoConfig", "aux_encoder", self.aux_encoder, list(DINOV2_SIZES))
        if self.aux_checkpoint is not None:
            if self.aux_encoder is None:
                raise ValueError("KaleidoConfig.aux_checkpoint is set but aux_encoder is None; name the encoder, "
                                 f"one of {', '.join(DINOV2_SIZES)}")
            if not Path(self.aux_checkpoint).is_file():
                raise ValueError(f"KaleidoConfig.aux_checkpoint: DINOv2 checkpoint not found: {self.aux_checkpoint} "
                                 "(weights are never downloaded)")


class KaleidoBlock(nn.Module):
    """x (B, V, h, w, D), c (B, D) or per frame (B, V, D) -> (B, V, h, w, D): spatial attn → window
    attn → SwiGLU, each a gated residual branch with its own adaLN shift/scale/gate."""

    def __init__(self, cfg: KaleidoConfig):
        super().__init__()
        dim, heads, kv = cfg.hidden, cfg.heads, cfg.kv_heads
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(3))
        self.spatial = SpatialAttention(dim, heads, kv, num_registers=cfg.num_registers, qk_norm=cfg.qk_norm)
        self.temporal = WindowAttention(dim, heads, kv, window=cfg.window,
                                        num_registers=cfg.num_registers, qk_norm=cfg.qk_norm)
        self.mlp = SwiGLU(dim, mlp_ratio=cfg.mlp_ratio)
        self.modulation = AdaLNModulation(dim, dim, 9)

    def forward(self, x: Tensor, c: Tensor, *, spatial, temporal, frame_mask: Tensor | None) -> Tensor:
        mods = self.modulation(c)
        h = modulate(self.norms[0](x), mods[0], mods[1])
        x = x + gate(self.spatial(h, transform=spatial), mods[2])
        h = modulate(self.norms[1](x), mods[3], mods[4])
        x = x + gate(self.temporal(h, transform=temporal, frame_mask=frame_mask), mods[5])
        h = modulate(self.norms[2](x), mods[6], mods[7])
        return x + gate(self.mlp(h), mods[8])


def active_views(frame_mask: Tensor | None, is_reference: Tensor) -> Tensor:
    """(B, V) bool: the views taking part, read from frame_mask (B, V, V) or None (all views).

    A view is active when it attends to, or is attended by, another view; a scene where no view
    is connected to another counts all its views as active (frame_mask_from_active's convention:
    inactive views see only themselves).
    """
    if frame_mask is None:
        return torch.ones_like(is_reference)
    eye = torch.eye(frame_mask.shape[-1], dtype=torch.bool, device=frame_mask.device)
    others = frame_mask & ~eye
    active = others.any(dim=2) | others.any(dim=1)
    return active | ~active.any(dim=1, keepdim=True)


def anchor_views(is_reference: Tensor, active: Tensor) -> Tensor:
    """(B,) index of each scene's first active reference view (first active view if none)."""
    priority = 2 * (is_reference & active).int() + active.int()
    return priority.argmax(dim=1)  # argmax returns the first maximal index


def take_views(x: Tensor, index: Tensor) -> Tensor:
    """x (B, V, ...), index (B,) -> (B, ...): view index[b] of scene b."""
    return x[torch.arange(x.shape[0], device=x.device), index]


def canonical_extrinsics(extrinsics: Tensor, is_reference: Tensor, pose_frame: str,
                         active: Tensor | None = None) -> Tensor:
    """(B, V, 4, 4) world-to-camera -> (B, V, 4, 4) in the chosen frame, translations normalised so
    the max ‖t‖ over each scene's active views is 1. "first_reference": E_i·E_r⁻¹ with r the first
    active reference view (anchor_views); "world": as given. active (B, V) bool, None = all: views
    outside it never change the result for the views inside it."""
    active = torch.ones_like(is_reference) if active is None else active
    if pose_frame == "first_reference":
        anchor = take_views(extrinsics, anchor_views(is_reference, active))
        extrinsics = extrinsics @ invert_se3(anchor)[:, None]
    return normalise_translations(extrinsics, active=active)


class Kaleido(nn.Module):
    """Sequence-to-sequence novel-view (or video-frame) synthesis by rectified flow."""

    def __init__(self, config: KaleidoConfig, *, posenc="gta"):
        """posenc: a registry name (built with head_dim = config.head_dim) or a SceneEncoding."""
        super().__init__()
        self.config = cfg = config
        self.encoding = registry.build("posenc", posenc, head_dim=cfg.head_dim) if isinstance(posenc, str) else posenc
        in_channels = cfg.in_channels + self.encoding.input_channels
        self.patch_embed = PatchEmbed(in_channels, cfg.hidden, cfg.patch_size)
        self.role_embed = nn.Parameter(torch.randn(2, cfg.hidden) * 0.02)  # [target, reference]
        self.time_embed = TimestepEmbedding(cfg.hidden)
        self.blocks = nn.ModuleList(KaleidoBlock(cfg) for _ in range(cfg.layers))
        self.final = FinalLayer(cfg.hidden, last_layer_channels(cfg) * cfg.patch_size**2)
        self.pixel_head = make_pixel_head(cfg)
        self.output_conv = None
        if cfg.output_conv:
            self.output_conv = nn.Conv2d(cfg.in_channels, cfg.in_channels, 3, padding=1)
            nn.init.zeros_(self.output_conv.weight)
            nn.init.zeros_(self.output_conv.bias)
        self.aux_encoder = None
        if cfg.aux_encoder is not None:  # frozen feature extractor; its features are projected in
            self.aux_encoder = load_dinov2(cfg.aux_encoder, cfg.aux_checkpoint).requires_grad_(False)
            self.aux_proj = nn.Linear(self.aux_encoder.config.embed_dim, cfg.hidden)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)

    def transforms(self, grid: tuple[int, int, int, int], *, poses: Tensor | None, times: Tensor | None):
        """The (spatial, temporal) transforms for a token grid (B, V, h, w), shared by all blocks.

        spatial acts on (B·V, heads, h·w, d); temporal on (B·nW, heads, V·K·K, d) in
        window_partition order. poses (B, V, 4, 4) from canonical_extrinsics; times (B, V) θ_t.
        Poses go in grouped, (B·nW, V, 4, 4): each applies to a frame's K·K contiguous tokens.
        """
        batch, views, h, w = grid
        k = self.config.window
        angles = grid_angles(h, w, device=self.role_embed.device)  # (h·w, 2)
        spatial = self.encoding.spatial(angles)
        per_token = repeat(angles, "(h w) c -> b v h w c", b=batch, v=views, h=h)
        hw = window_partition(per_token, k)  # (B·nW, V·K·K, 2)
        if poses is not None:
            poses = repeat(poses, "b v i j -> (b nw) v i j", nw=hw.shape[0] // batch)  # one per K·K run
        if times is not None:
            times = window_partition(repeat(times, "b v -> b v h w", h=h, w=w), k)
        return spatial, self.encoding.temporal(hw, poses, times)

    def embed(self, z: Tensor, *, is_reference: Tensor, keep_content: Tensor,
              intrinsics: Tensor | None, poses: Tensor | None, anchor: Tensor) -> Tensor:
        """(B, V, C, H, W) -> tokens (B, V, h, w, D). Reference frames whose content is dropped
        (keep_content False) get zero latents; positional input channels are kept. Input features
        relative to the first camera are taken relative to the anchor view (B,) (anchor_views)."""
        x = z * rearrange(keep_content, "b v -> b v 1 1 1").to(z.dtype)
        if self.encoding.input_channels:
            if intrinsics is None or poses is None:
                raise ValueError("intrinsics and extrinsics are required by this posenc (input features)")
            first = lambda m: torch.cat([take_views(m, anchor)[:, None], m], dim=1)  # anchor as view 0
            feats = self.encoding.input_features(first(intrinsics), first(poses), z.shape[-2], z.shape[-1])
            x = torch.cat([x, feats[:, 1:].to(z.dtype)], dim=2)
        tokens = self.patch_embed(x)                                    # (B, V, h, w, D)
        if self.config.absolute_positions:
            tokens = tokens + grid_sincos(*tokens.shape[2:4], tokens.shape[-1], device=tokens.device).to(tokens.dtype)
        return tokens + rearrange(self.role_embed[is_reference.long()], "b v d -> b v 1 1 d")

    def aux_features(self, images: Tensor, use: Tensor, grid: tuple[int, int]) -> Tensor:
        """DINOv2 features of the frames where `use` (B, V) is True, on the token grid.

        images (B, V, 3, Hi, Wi) RGB in [0, 1] -> (B, V, h, w, D), zero where `use` is False (so
        target images never leak in). Frames are resized to (h·14, w·14) so DINOv2's patch grid is
        the token grid; concatenating the features to the tokens is realised as adding a linear
        projection of them.
        """
        patch = self.aux_encoder.config.patch_size
        chosen = images[use]  # (n, 3, Hi, Wi)
        size = (grid[0] * patch, grid[1] * patch)
        resized = nn.functional.interpolate(chosen, size=size, mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            feats = self.aux_encoder.patch_features(normalise_images(resized))
        out = feats.new_zeros(*use.shape, *grid, self.config.hidden)
        out[use] = self.aux_proj(feats)
        return out

    def forward(
        self,
        z: Tensor,
        t: Tensor,
        *,
        is_reference: Tensor,
        intrinsics: Tensor | None = None,
        extrinsics: Tensor | None = None,
        times: Tensor | None = None,
        frame_mask: Tensor | None = None,
        drop_condition: Tensor | None = None,
        images: Tensor | None = None,
    ) -> Tensor:
        """Predict the velocity ε − x for every frame (the network predicts `config.prediction`).

        z (B, V, C, H, W): clean latents in reference frames, z_t in target frames; t (B,) in [0, 1],
        or (B, V) with `config.frame_time` (one per frame; references' entries are read as 0);
        is_reference (B, V) bool; intrinsics (B, V, 3, 3) in pixels of z's (H, W) grid (only read by
        encodings with input channels, e.g. Plücker); extrinsics (B, V, 4, 4) world-to-camera (3D
        data) or None; times (B, V) θ_t angles (video) or None; frame_mask (B, V, V) bool, frame i
        may attend to frame j (views connected to no other view are inactive: they never change
        the active views' outputs, pose anchor and normalisation included); drop_condition (B,) bool: those scenes' reference content is zeroed
        (their positions stay) — the unconditional branch of classifier-free guidance;
        images (B, V, 3, Hi, Wi) RGB in [0, 1], required with an aux encoder: the reference frames'
        DINOv2 features are added to their tokens (target images are never read).
        Returns (B, V, C, H, W); only target frames are meaningful.
        """
        self._check_inputs(z, t, is_reference, extrinsics, drop_condition, frame_mask)
        keep_content = torch.ones_like(is_reference)
        if drop_condition is not None:
            keep_content = ~(is_reference & drop_condition[:, None])
        active = active_views(frame_mask, is_reference)
        poses = None
        if extrinsics is not None:
            with full_precision(extrinsics):  # poses in float32 (float64 stays) under autocast too
                exact = extrinsics.to(torch.promote_types(extrinsics.dtype, torch.float32))
                poses = canonical_extrinsics(exact, is_reference, self.config.pose_frame, active)
        tokens = self.embed(z, is_reference=is_reference, keep_content=keep_content,
                            intrinsics=intrinsics, poses=poses, anchor=anchor_views(is_reference, active))
        if self.aux_encoder is not None:
            if images is None:
                raise ValueError("images (B, V, 3, Hi, Wi) are required when KaleidoConfig.aux_encoder is set")
            tokens = tokens + self.aux_features(images, is_reference & keep_content, tuple(tokens.shape[2:4]))
        spatial, temporal = self.transforms(tuple(tokens.shape[:4]), poses=poses, times=times)
        c = time_conditioning(self.time_embed, t, is_reference, self.config)   # (B, D) or per frame (B, V, D)
        for block in self.blocks:
            tokens = block(tokens, c, spatial=spatial, temporal=temporal, frame_mask=frame_mask)
        out = unpatchify(self.final(tokens, c), self.config.patch_size)            # (B, V, C + F, H, W)
        out = apply_pixel_head(self.pixel_head, out, z, ~is_reference)  # references are never read
        if self.output_conv is not None:
            out = out + rearrange(self.output_conv(rearrange(out, "b v c h w -> (b v) c h w")),
                                  "(b v) c h w -> b v c h w", b=out.shape[0])
        return output_velocity(out, z, t, self.config)

    def velocity_fn(self, *, is_reference: Tensor, intrinsics: Tensor | None = None,
                    extrinsics: Tensor | None = None, times: Tensor | None = None,
                    frame_mask: Tensor | None = None, images: Tensor | None = None):
        """`velocity_fn(z, t, *, drop_condition)` for seqrender.flowmatch.sample with these views
        fixed (arguments as in forward). When the solver batches [cond; uncond] (2B rows for
        classifier-free guidance) the view tensors are repeated to match."""
        views = dict(is_reference=is_reference, intrinsics=intrinsics, extrinsics=extrinsics, times=times,
                     frame_mask=frame_mask, images=images)

        def fn(z: Tensor, t: Tensor, *, drop_condition: Tensor | None = None) -> Tensor:
            reps = z.shape[0] // is_reference.shape[0]
            repeated = {k: None if v is None else v.repeat(reps, *([1] * (v.dim() - 1))) for k, v in views.items()}
            return self(z, t, drop_condition=drop_condition, **repeated)

        return fn

    def _check_inputs(self, z, t, is_reference, extrinsics, drop_condition, frame_mask) -> None:
        batch, views, channels = z.shape[:3]
        if frame_mask is not None:
            check_frame_mask(frame_mask, batch, views)
        if channels != self.config.in_channels:
            raise ValueError(f"z must have in_channels={self.config.in_channels} channels; got {channels}")
        check_time(t, (batch, views), self.config)
        if is_reference.dtype != torch.bool or tuple(is_reference.shape) != (batch, views):
            raise ValueError(f"is_reference must be bool of shape (B, V) = {(batch, views)}")
        if extrinsics is not None and tuple(extrinsics.shape) != (batch, views, 4, 4):
            raise ValueError(f"extrinsics must have shape (B, V, 4, 4); got {tuple(extrinsics.shape)}")
        if drop_condition is not None and (drop_condition.dtype != torch.bool
                                           or tuple(drop_condition.shape) != (batch,)):
            raise ValueError(f"drop_condition must be bool of shape (B,) = ({batch},)")
