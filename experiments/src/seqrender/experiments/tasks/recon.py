"""Feed-forward 4-D reconstruction (4Real-Video-V2 §3.2) on the embedded 4-D scenes (task "recon",
model "recon", dataset "embedded4d").

Each sample is one scene: its whole V × T grid (known cameras) goes in, Gaussians come out per time
step, and they are rendered at the K novel cameras of every time step (`data/dynamic_views.py`,
never given as input). Loss: colour MSE + `alpha_weight` · coverage MSE at the novel cameras, plus
`depth_weight` · |log depth error| of the depth head on the covered pixels of the input views (the
procedural renderer gives depth), plus `opacity_weight` · MSE between each input pixel's Gaussian
opacity and that pixel's true coverage (added after two runs collapsed to transparent Gaussians:
white background Gaussians floating in front of the objects). Evaluation: `recon_eval.evaluate_recon`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from seqrender.experiments.batching import scene_index
from seqrender.experiments.data.dynamic import Embedded4DConfig
from seqrender.experiments.data.dynamic_views import ReconScenes, recon_scenes
from seqrender.experiments.data.seeding import generator_from
from seqrender.experiments.tasks.base import Task, register

COVERED = 0.99  # input pixels whose coverage is at least this carry a depth target


@dataclass
class ReconBatch:
    """scenes: B scenes (ReconScenes); targets (B, K') novel cameras rendered for the loss; the loss
    weights of the run's model config."""

    scenes: ReconScenes
    targets: Tensor
    alpha_weight: float
    depth_weight: float
    opacity_weight: float

    def to(self, device) -> "ReconBatch":
        return ReconBatch(self.scenes.to(device), self.targets.to(device), self.alpha_weight, self.depth_weight,
                          self.opacity_weight)

    @property
    def x(self) -> Tensor:
        """The model input (B, V, T, 3, H, W) (for the throughput meter)."""
        return self.scenes.images


def per_frame(cameras: Tensor, times: int) -> Tensor:
    """Cameras fixed over time (B, V, ...) -> (B, V, T, ...)."""
    return repeat(cameras, "b v ... -> b v t ...", t=times)


def reconstruct(model: nn.Module, scenes: ReconScenes):
    """The model's Reconstruction of scenes (B) from their whole grids and known cameras."""
    t = scenes.images.shape[2]
    return model(scenes.images, intrinsics=per_frame(scenes.intrinsics, t), extrinsics=per_frame(scenes.extrinsics, t))


def render_novel(model: nn.Module, recon, scenes: ReconScenes, targets: Tensor | None = None):
    """Render `recon` at the novel cameras `targets` (B, K') (all K when None) of every time step ->
    Render with color (B, K', T, 3, H, W), alpha / depth (B, K', T, 1, H, W)."""
    b, _, t, _, h, w = scenes.images.shape
    if targets is None:
        targets = torch.arange(scenes.novel_extrinsics.shape[1]).expand(b, -1)
    pick = lambda x: torch.stack([x[i, targets[i]] for i in range(b)])
    return model.render(recon, per_frame(pick(scenes.novel_intrinsics), t), per_frame(pick(scenes.novel_extrinsics), t),
                        height=h, width=w)


def recon_loss(model: nn.Module, batch: ReconBatch) -> Tensor:
    """Scalar loss of one batch (see the module docstring)."""
    s, b = batch.scenes, len(batch.scenes)
    recon = reconstruct(model, s)
    out = render_novel(model, recon, s, batch.targets)
    pick = lambda x: torch.stack([x[i, batch.targets[i]] for i in range(b)])
    colour = (out.color - pick(s.novel_images)).pow(2).mean()
    coverage = (out.alpha[:, :, :, 0] - pick(s.novel_alpha)).pow(2).mean()
    covered = (s.alpha >= COVERED).to(s.depth.dtype)
    log_err = (recon.depth.clamp_min(1e-6).log() - s.depth.clamp_min(1e-6).log()).abs()
    depth = (log_err * covered).sum() / covered.sum().clamp_min(1)
    truth = rearrange(s.alpha, "b v t h w -> (b t) (v h w)")        # the Gaussians' order (gaussians_from_maps)
    opacity = (recon.gaussians.opacities - truth).pow(2).mean()
    return colour + batch.alpha_weight * coverage + batch.depth_weight * depth + batch.opacity_weight * opacity


class Reconstruction(Task):
    name = "recon"
    layout = "grid"

    def load(self, cfg, split: str) -> ReconScenes:
        if not isinstance(cfg.dataset.config, Embedded4DConfig):
            raise ValueError(f"task 'recon' needs dataset 'embedded4d' (its scenes' depth, novel views and geometry),"
                             f" got {cfg.dataset.name!r}")
        scenes = recon_scenes(cfg.dataset.config, split=split, progress=cfg.trainer.progress)
        if len(scenes) == 0:
            raise ValueError(f"dataset split {split!r} is empty: increase dataset.num_scenes")
        return scenes

    def build_model(self, cfg) -> nn.Module:
        torch.manual_seed(cfg.seed)
        return cfg.model.build()

    def batches(self, cfg, data: ReconScenes, sampler):
        tc, mc, k = cfg.trainer, cfg.model.config, data.novel_extrinsics.shape[1]
        per_sample = min(k, mc.train_targets)

        def draw(step: int, indices: range) -> ReconBatch:
            scenes = [scene_index(cfg.seed, step * tc.batch_size + i, len(data)) for i in indices]
            targets = [torch.randperm(k, generator=generator_from(cfg.seed, step, i))[:per_sample] for i in indices]
            return ReconBatch(data.take(torch.tensor(scenes)), torch.stack(targets), mc.alpha_weight, mc.depth_weight,
                              mc.opacity_weight)
        return draw

    def loss(self, model: nn.Module, batch: ReconBatch) -> Tensor:
        return recon_loss(model, batch)

    def evaluate(self, cfg, heldout: ReconScenes, models, *, progress: bool = True):
        from seqrender.experiments.recon_eval import evaluate_recon

        return evaluate_recon(cfg, heldout, models, progress=progress)

    def pictures(self, cfg, heldout: ReconScenes, ema: nn.Module, run_dir) -> dict:
        from seqrender.experiments.recon_eval import write_novel_views

        write_novel_views(run_dir / "novel_views.png", cfg, heldout, ema)
        return {}


register(Reconstruction())
