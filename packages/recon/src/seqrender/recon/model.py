"""Feed-forward 4-D Gaussian reconstruction (4Real-Video-V2 §3.2): aggregator → camera-token
replacement → depth / Gaussian / camera heads → pixel-aligned Gaussians per timestep → rasteriser.
Trained with MSE (+ LPIPS when a local LPIPS checkpoint is configured) on rendered views."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from seqrender.recon.aggregator import Aggregator, AggregatorConfig, load_vggt_checkpoint
from seqrender.recon.camera_head import CameraHead, decode_pose_encoding
from seqrender.recon.camera_head_vggt import VGGTCameraHead
from seqrender.recon.dpt_vggt import VGGTDepthHead
from seqrender.recon.camera_tokens import replace_camera_tokens
from seqrender.recon.gaussian_head import DepthHead, GaussianHead, gaussians_from_maps
from seqrender.recon.metrics import LPIPSUnavailable, lpips
from seqrender.recon.rasterizer import Gaussians, RasterConfig, Render, render_gaussians


@dataclass(frozen=True)
class ReconstructorConfig:
    """head_layers: aggregator layers fed to the DPT heads (VGGT: 4, 11, 17, 23); the camera head
    reads the last layer. heads: "lite" (DPT-lite depth head, MLP camera head) or "vggt" (VGGT's
    depth and camera heads, `dpt_vggt` / `camera_head_vggt`: with the default aggregator every
    `aggregator.*`, `depth_head.*` and `camera_head.*` key of a VGGT-1B checkpoint loads, see
    `load_vggt_reconstructor`; needs 4 head layers). lpips_checkpoint: local LPIPS weights (see metrics.load_lpips); without
    it the loss is MSE only."""

    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    head_layers: tuple[int, ...] = (4, 11, 17, 23)
    head_features: int = 256
    heads: str = "lite"
    vggt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    replace_camera_tokens: bool = True
    raster: RasterConfig = field(default_factory=RasterConfig)
    lpips_checkpoint: str | None = None
    lpips_net: str = "alex"
    lpips_weight: float = 0.5

    @property
    def patch_size(self) -> int:
        return self.aggregator.patch_size

    def __post_init__(self):
        if not self.head_layers or any(not 0 <= i < self.aggregator.depth for i in self.head_layers):
            raise ValueError(f"head_layers must be non-empty and lie in [0, {self.aggregator.depth}), got {self.head_layers}")
        if self.heads not in ("lite", "vggt"):
            raise ValueError(f"heads must be 'lite' or 'vggt', got {self.heads!r}")
        if self.heads == "vggt" and len(self.head_layers) != 4:
            raise ValueError(f"heads='vggt' needs 4 head_layers, got {self.head_layers}")


@dataclass
class Reconstruction:
    """gaussians: batch B·T (timestep-major within each scene), N = V·H·W pixel-aligned Gaussians;
    depth / confidence (B, V, T, H, W); pose_encoding (B, V, T, 9) predicted; intrinsics (B, V, T, 3, 3)
    and extrinsics (B, V, T, 4, 4) used for unprojection (given, else decoded from the prediction)."""

    gaussians: Gaussians
    depth: Tensor
    confidence: Tensor
    pose_encoding: Tensor
    intrinsics: Tensor
    extrinsics: Tensor


class FeedForwardReconstructor(nn.Module):
    def __init__(self, config: ReconstructorConfig = ReconstructorConfig()):
        super().__init__()
        self.config = config
        agg = config.aggregator
        self.aggregator = Aggregator(agg)
        dim, n = 2 * agg.embed_dim, len(config.head_layers)
        if config.heads == "vggt":
            self.depth_head = VGGTDepthHead(dim, patch_size=agg.patch_size, features=config.head_features,
                                            out_channels=config.vggt_out_channels)
            self.camera_head = VGGTCameraHead(dim, num_heads=agg.num_heads)
        else:
            self.depth_head = DepthHead(dim, num_layers=n, patch_size=agg.patch_size, features=config.head_features)
            self.camera_head = CameraHead(dim)
        self.gaussian_head = GaussianHead(dim, num_layers=n, patch_size=agg.patch_size, features=config.head_features)
        if config.lpips_checkpoint is not None and not Path(config.lpips_checkpoint).is_file():
            raise LPIPSUnavailable(f"lpips_checkpoint {config.lpips_checkpoint} is not a local file")

    def forward(self, images: Tensor, *, intrinsics: Tensor | None = None, extrinsics: Tensor | None = None) -> Reconstruction:
        """images (B, V, T, 3, H, W) in [0, 1]; intrinsics (B, V, T, 3, 3) and extrinsics
        (B, V, T, 4, 4) both or neither (then the predicted cameras are used)."""
        if (intrinsics is None) != (extrinsics is None):
            raise ValueError("pass both intrinsics and extrinsics, or neither")
        b, v, t, _, h, w = images.shape
        last = self.config.aggregator.depth - 1
        layers = sorted(set(self.config.head_layers) | {last})
        tokens = dict(zip(layers, self.aggregator(images, layers=layers)))
        if self.config.replace_camera_tokens:
            tokens = {i: replace_camera_tokens(x) for i, x in tokens.items()}
        cameras = rearrange(tokens[last][..., 0, :], "b v t c -> (b t) v c")  # the views of one time step
        pose = rearrange(self.camera_head(cameras), "(b t) v c -> b v t c", t=t)
        if intrinsics is None:
            extrinsics, intrinsics = decode_pose_encoding(pose, height=h, width=w)
        start = self.aggregator.patch_start_idx
        patches = [rearrange(tokens[i][..., start:, :], "b v t p c -> (b v t) p c") for i in self.config.head_layers]
        frames = rearrange(images, "b v t c h w -> (b v t) c h w")
        depth = self.depth_head(patches, frames)
        raw = self.gaussian_head(patches, frames)
        per_step = lambda x: rearrange(x, "(b v t) ... -> (b t) v ...", v=v, t=t)
        grid = lambda x: rearrange(x, "b v t ... -> (b t) v ...")
        gaussians = gaussians_from_maps(per_step(raw), per_step(depth.depth), grid(images), grid(intrinsics), grid(extrinsics))
        unflat = lambda x: rearrange(x, "(b v t) h w -> b v t h w", v=v, t=t)
        return Reconstruction(gaussians, unflat(depth.depth), unflat(depth.confidence), pose, intrinsics, extrinsics)

    def render(self, recon: Reconstruction, intrinsics: Tensor, extrinsics: Tensor, *, height: int, width: int) -> Render:
        """Render target cameras intrinsics (B, V', T, 3, 3), extrinsics (B, V', T, 4, 4) of each timestep
        -> Render with color (B, V', T, 3, H, W), alpha / depth (B, V', T, 1, H, W)."""
        t = extrinsics.shape[2]
        grid = lambda x: rearrange(x, "b v t ... -> (b t) v ...")
        out = render_gaussians(recon.gaussians, grid(extrinsics), grid(intrinsics), height=height, width=width, config=self.config.raster)
        back = lambda x: rearrange(x, "(b t) v ... -> b v t ...", t=t)
        return Render(color=back(out.color), alpha=back(out.alpha), depth=back(out.depth))

    def loss(self, rendered: Tensor, target: Tensor) -> dict[str, Tensor]:
        """rendered, target (..., 3, H, W) -> {"loss", "mse"(, "lpips")}; LPIPS only with a checkpoint."""
        mse = F.mse_loss(rendered, target)
        if self.config.lpips_checkpoint is None:
            return {"loss": mse, "mse": mse}
        flat = lambda x: x.reshape(-1, *x.shape[-3:])
        perceptual = lpips(flat(rendered), flat(target), checkpoint=self.config.lpips_checkpoint, net=self.config.lpips_net).mean()
        return {"loss": mse + self.config.lpips_weight * perceptual, "mse": mse, "lpips": perceptual}


VGGT_PARTS = ("aggregator", "depth_head", "camera_head")


def load_vggt_reconstructor(model: FeedForwardReconstructor, path) -> list[str]:
    """Load a local VGGT checkpoint's aggregator, depth head and camera head into `model` (built
    with heads="vggt" and VGGT's sizes), each strictly (`aggregator.load_vggt_checkpoint`). Returns the
    keys left at initialisation: the zero-initialised temporal layers and the Gaussian head."""
    if model.config.heads != "vggt":
        raise ValueError("load_vggt_reconstructor needs a model built with heads='vggt'")
    left = []
    for part in VGGT_PARTS:
        left += [f"{part}.{k}" for k in load_vggt_checkpoint(getattr(model, part), path, prefix=f"{part}.")]
    return left + [f"gaussian_head.{k}" for k in model.gaussian_head.state_dict()]
