"""Model "recon": the feed-forward 4-D Gaussian reconstructor of `seqrender.recon` as a registry
entry, with flat fields (one Hydra key each). Defaults are a CPU-sized toy: a conv patch embedding
instead of DINOv2, width 64, 4 frame/global block pairs with zero-initialised temporal attention,
camera-token replacement on; renders composite on a white background (the embedded data's)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from seqrender.recon import FeedForwardReconstructor, RasterConfig, ReconstructorConfig
from seqrender.recon.aggregator import AggregatorConfig


@dataclass(frozen=True)
class ReconModelConfig:
    layout: ClassVar[str] = "grid"      # trains on view × time grids (seqrender.experiments.layouts)
    task: ClassVar[str] = "recon"       # its registered task (seqrender.experiments.tasks)

    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_register_tokens: int = 1
    temporal: bool = True
    replace_camera_tokens: bool = True
    head_layers: tuple[int, ...] = (1, 3)
    head_features: int = 32
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # initial depth (world units; the embedded cameras orbit at 3.5): the depth head's log-depth bias.
    # 0 keeps exp(0) = 1, which put every Gaussian 1 unit in front of its camera and let training
    # collapse to transparent Gaussians (README "Feed-forward 4D reconstruction").
    depth_init: float = 3.5
    # training (task "recon"): novel cameras rendered per sample, loss weights of coverage and log-depth
    train_targets: int = 2
    alpha_weight: float = 0.5
    depth_weight: float = 0.1
    opacity_weight: float = 1.0

    def __post_init__(self):
        weights = (self.alpha_weight, self.depth_weight, self.opacity_weight, self.depth_init)
        if self.train_targets < 1 or min(weights) < 0:
            raise ValueError(f"need train_targets >= 1, non-negative loss weights and depth_init, got "
                             f"{self.train_targets}, {weights}")

    def reconstructor(self) -> ReconstructorConfig:
        agg = AggregatorConfig(img_size=32, patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
                               num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                               num_register_tokens=self.num_register_tokens, patch_embed="conv",
                               temporal=self.temporal)
        return ReconstructorConfig(aggregator=agg, head_layers=tuple(self.head_layers),
                                   head_features=self.head_features,
                                   replace_camera_tokens=self.replace_camera_tokens,
                                   raster=RasterConfig(background=tuple(self.background)))


def build_recon(cfg: ReconModelConfig) -> FeedForwardReconstructor:
    model = FeedForwardReconstructor(cfg.reconstructor())
    if cfg.depth_init > 0:
        with torch.no_grad():
            model.depth_head.dpt.output.bias[0] += math.log(cfg.depth_init)
    return model
