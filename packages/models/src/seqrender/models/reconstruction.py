"""Model "recon": the feed-forward 4-D Gaussian reconstructor of `seqrender.recon` as a registry
entry, with flat fields (one Hydra key each). Defaults are a CPU-sized toy: a conv patch embedding
instead of DINOv2, width 64, 4 frame/global block pairs with zero-initialised temporal attention,
camera-token replacement on; renders composite on a white background (the embedded data's)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
    # training (task "recon"): novel cameras rendered per sample, loss weights of coverage and log-depth
    train_targets: int = 2
    alpha_weight: float = 0.5
    depth_weight: float = 0.1

    def __post_init__(self):
        if self.train_targets < 1 or self.alpha_weight < 0 or self.depth_weight < 0:
            raise ValueError(f"need train_targets >= 1 and non-negative loss weights, got {self.train_targets}, "
                             f"{self.alpha_weight}, {self.depth_weight}")

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
    return FeedForwardReconstructor(cfg.reconstructor())
