"""Training batches as a pure function of (seed, step, global sample index).

The scene order is a fresh permutation of the training scenes per epoch (keyed by (seed, epoch));
everything else about sample g of step s (its views, reference split, timestep t, noise ε and the
condition-dropout coin) comes from the stream keyed by (seed, s, g). So a resumed run, and every
rank of a DDP run taking its slice of the global batch, draw exactly what one uninterrupted
single-process run draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from seqrender import flowmatch
from seqrender.experiments.data.seeding import generator_from
from seqrender.models.views import sample_view_split


@dataclass(frozen=True)
class SceneTensors:
    """S scenes with Vs views each, in memory. images (S, Vs, 3, H, W) in [0, 1];
    intrinsics (S, Vs, 3, 3) pixels; extrinsics (S, Vs, 4, 4) world-to-camera (OpenCV)."""

    images: Tensor
    intrinsics: Tensor
    extrinsics: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def views(self) -> int:
        return self.images.shape[1]


@dataclass
class TrainBatch:
    """x, noise (B, V, 3, H, W) with x in [-1, 1]; t (B,); is_reference, loss_mask (B, V) bool;
    frame_mask (B, V, V) bool; drop_condition (B,) bool; intrinsics (B, V, 3, 3); extrinsics (B, V, 4, 4);
    images (B, V, 3, H, W) in [0, 1] or None: the RGB frames when x holds VAE latents (`latent`)."""

    x: Tensor
    noise: Tensor
    t: Tensor
    is_reference: Tensor
    loss_mask: Tensor
    frame_mask: Tensor
    drop_condition: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    images: Tensor | None = None

    def to(self, device: torch.device) -> "TrainBatch":
        return TrainBatch(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})

    def noised(self) -> Tensor:
        """z_t (B, V, 3, H, W): targets on the path (1 − t)x + tε, references clean."""
        z = flowmatch.interpolate(self.x, self.noise, self.t)
        return torch.where(self.is_reference[:, :, None, None, None], self.x, z)


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_scenes: int) -> Tensor:
    return torch.randperm(num_scenes, generator=generator_from(seed, epoch))


def scene_index(seed: int, position: int, num_scenes: int) -> int:
    """Scene of the `position`-th training sample overall (epoch-wise permutations)."""
    epoch, offset = divmod(position, num_scenes)
    return int(_epoch_order(seed, epoch, num_scenes)[offset])


def make_train_batch(scenes: SceneTensors, *, seed: int, step: int, indices: range, batch_size: int,
                     views: int, sampler, cond_drop_prob: float, random_masking: bool,
                     references: int | None = None) -> TrainBatch:
    """Samples `indices` (global indices within step `step`'s batch of `batch_size`); `references`:
    a fixed number of reference views per sample (None: n ~ 2^−n, Kaleido's view sampling)."""
    if views > scenes.views:
        raise ValueError(f"trainer.views={views} exceeds the {scenes.views} views per scene")
    parts = [_one_sample(scenes, seed=seed, step=step, index=g, batch_size=batch_size, views=views,
                         sampler=sampler, cond_drop_prob=cond_drop_prob, random_masking=random_masking,
                         references=references)
             for g in indices]
    return TrainBatch(**{k: torch.stack([p[k] for p in parts]) for k in parts[0]})


def _one_sample(scenes: SceneTensors, *, seed: int, step: int, index: int, batch_size: int, views: int,
                sampler, cond_drop_prob: float, random_masking: bool, references: int | None) -> dict[str, Tensor]:
    gen = generator_from(seed, step, index)
    s = scene_index(seed, step * batch_size + index, len(scenes))
    chosen = torch.randperm(scenes.views, generator=gen)[:views]
    split = sample_view_split(1, views, random_masking=random_masking, references=references, generator=gen)
    t = sampler.sample(1, generator=gen)[0]
    x = scenes.images[s, chosen] * 2 - 1
    return dict(
        x=x,
        noise=torch.randn(x.shape, generator=gen),
        t=t.float(),
        is_reference=split.is_reference[0],
        loss_mask=split.target_mask[0],
        frame_mask=split.frame_mask[0],
        drop_condition=torch.rand((), generator=gen) < cond_drop_prob,
        intrinsics=scenes.intrinsics[s, chosen],
        extrinsics=scenes.extrinsics[s, chosen],
    )
