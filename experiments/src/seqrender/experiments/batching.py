"""Training batches as a pure function of (seed, step, global sample index).

The scene order is a fresh permutation of the training scenes per epoch (keyed by (seed, epoch));
everything else about sample g of step s (its views, reference split, timestep t, noise ε and the
condition-dropout coin) comes from the stream keyed by (seed, s, g). So a resumed run, and every
rank of a DDP run taking its slice of the global batch, draw exactly what one uninterrupted
single-process run draws.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import torch
from torch import Tensor

from seqrender import flowmatch
from seqrender.experiments.data.seeding import generator_from
from seqrender.models.views import sample_view_split


@dataclass(frozen=True)
class SceneTensors:
    """S scenes with Vs views each, in memory. images (S, Vs, 3, H, W) in [0, 1];
    intrinsics (S, Vs, 3, 3) pixels; extrinsics (S, Vs, 4, 4) world-to-camera (OpenCV);
    times (S, Vs) θ_t angles of clips (video: positions in time, no poses) or None."""

    images: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    times: Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def views(self) -> int:
        return self.images.shape[1]

    def read(self, scene: int, frames: Tensor) -> dict[str, Tensor | None]:
        """Views `frames` (V,) of scene `scene`: images (V, 3, H, W), intrinsics, extrinsics, times."""
        return {"images": self.images[scene, frames], "intrinsics": self.intrinsics[scene, frames],
                "extrinsics": self.extrinsics[scene, frames],
                "times": None if self.times is None else self.times[scene, frames]}


def to_device(batch, device: torch.device | str):
    """A copy of the dataclass `batch` with each tensor field on `device` (None and other fields as they are)."""
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
                                         if torch.is_tensor(getattr(batch, f.name))})


@dataclass
class TrainBatch:
    """x, noise (B, V, 3, H, W) with x in [-1, 1]; t (B,), or (B, V) with one t per frame
    (`ViewSampling.frame_times`); is_reference, loss_mask (B, V) bool;
    frame_mask (B, V, V) bool; drop_condition (B,) bool; intrinsics (B, V, 3, 3); extrinsics (B, V, 4, 4);
    images (B, V, 3, H, W) in [0, 1] or None: the RGB frames when x holds VAE latents (`latent`);
    times (B, V) θ_t angles or None: video clips, positioned in time instead of by their poses;
    scene (B,), frames (B, V) int64: which scene and frames each sample shows (the latent cache's keys)."""

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
    times: Tensor | None = None
    scene: Tensor | None = None
    frames: Tensor | None = None

    def to(self, device: torch.device) -> "TrainBatch":
        return to_device(self, device)

    def noised(self) -> Tensor:
        """z_t (B, V, 3, H, W): targets on the path (1 − t)x + tε, references clean."""
        z = flowmatch.interpolate(self.x, self.noise, self.t)
        return torch.where(self.is_reference[:, :, None, None, None], self.x, z)

    def positions(self) -> dict[str, Tensor | None]:
        """The model's position inputs: θ_t for clips (no poses), else the extrinsics."""
        return positions(self.extrinsics, self.times)


def positions(extrinsics: Tensor, times: Tensor | None) -> dict[str, Tensor | None]:
    """{"extrinsics", "times"} for Kaleido's forward: times (video, extrinsics None) or extrinsics."""
    return {"extrinsics": None, "times": times} if times is not None else {"extrinsics": extrinsics, "times": None}


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_scenes: int) -> Tensor:
    return torch.randperm(num_scenes, generator=generator_from(seed, epoch))


def draw_times(sampler, frames: tuple[int, ...], *, per_frame: bool, generator) -> Tensor:
    """A sample's timestep: one per frame, shape `frames` (`frame_time` models), or one per sample
    (a 0-d tensor, the papers' reading: the sampler is then called for 1, as before, so the draws
    of the other streams are unchanged)."""
    count = math.prod(frames) if per_frame else 1
    t = sampler.sample(count, generator=generator).float()
    return t.reshape(frames) if per_frame else t[0]


def scene_index(seed: int, position: int, num_scenes: int) -> int:
    """Scene of the `position`-th training sample overall (epoch-wise permutations)."""
    epoch, offset = divmod(position, num_scenes)
    return int(_epoch_order(seed, epoch, num_scenes)[offset])


@dataclass(frozen=True)
class ViewSampling:
    """How training samples are drawn (Kaleido §3.2.1 iii): `views` frames of a scene, n ~ 2^−n of
    them references (or a fixed `references`; random view masking optional), t from `sampler`
    (one per sample, or with `frame_times` one per view: the model must take t (B, V)), condition
    dropout."""

    seed: int
    batch_size: int
    views: int
    sampler: object
    cond_drop_prob: float
    random_masking: bool
    references: int | None = None  # a fixed number of references per sample (None: n ~ 2^−n)
    frame_times: bool = False  # one t per view (B, V) instead of one per sample (B,)

    def sample(self, step: int, index: int, *, num_scenes: int, frames_of: Callable[[int], int],
               read: Callable[[int, Tensor], dict]) -> dict[str, Tensor | None]:
        """Sample `index` of step `step`: a pure function of (seed, step, index). `frames_of(scene)`
        counts a scene's frames; `read(scene, frames)` returns their images (V, 3, H, W) in [0, 1],
        intrinsics, extrinsics and times (or None), from memory or from disk."""
        gen = generator_from(self.seed, step, index)
        scene = scene_index(self.seed, step * self.batch_size + index, num_scenes)
        available = frames_of(scene)
        if self.views > available:
            raise ValueError(f"trainer.views={self.views} exceeds the {available} views of training scene {scene}")
        chosen = torch.randperm(available, generator=gen)[:self.views]
        split = sample_view_split(1, self.views, random_masking=self.random_masking, references=self.references,
                                  generator=gen)
        t = draw_times(self.sampler, (self.views,), per_frame=self.frame_times, generator=gen)
        views = read(scene, chosen)
        x = views["images"] * 2 - 1
        return dict(
            x=x,
            noise=torch.randn(x.shape, generator=gen),
            t=t,
            is_reference=split.is_reference[0],
            loss_mask=split.target_mask[0],
            frame_mask=split.frame_mask[0],
            drop_condition=torch.rand((), generator=gen) < self.cond_drop_prob,
            intrinsics=views["intrinsics"],
            extrinsics=views["extrinsics"],
            times=views["times"],
            scene=torch.tensor(scene),
            frames=chosen,
        )


def collate(parts: Sequence[dict]) -> TrainBatch:
    """Samples (dicts of `ViewSampling.sample`) -> one TrainBatch (fields stacked; None stays None)."""
    return TrainBatch(**{k: None if parts[0][k] is None else torch.stack([p[k] for p in parts]) for k in parts[0]})


def make_train_batch(scenes: SceneTensors, *, seed: int, step: int, indices: range, batch_size: int,
                     views: int, sampler, cond_drop_prob: float, random_masking: bool,
                     references: int | None = None, frame_times: bool = False) -> TrainBatch:
    """Samples `indices` (global indices within step `step`'s batch of `batch_size`) of scenes in
    memory; `references`: a fixed number of reference views per sample (None: n ~ 2^−n);
    `frame_times`: one t per view."""
    sampling = ViewSampling(seed, batch_size, views, sampler, cond_drop_prob, random_masking, references, frame_times)
    return collate([sampling.sample(step, g, num_scenes=len(scenes), frames_of=lambda s: scenes.views,
                                    read=scenes.read) for g in indices])
