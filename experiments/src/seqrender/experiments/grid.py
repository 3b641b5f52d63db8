"""4Real-Video-V2 training on V × T grids: given cells, the conditioned velocity, batches and loss.

As in 4Real-Video-V2 (§3.1), the first row (view 0 over time: a fixed-view video) and the first
column (time 0 over views: a freeze-time video) are given; the model generates the other cells.
Batches are a pure function of (seed, step, global sample index), like Kaleido's
(`batching.scene_index` orders the scenes; the stream keyed (seed, step, index) draws t, ε and the
condition-dropout coin), so resume and DDP slices draw what one uninterrupted run draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqrender import flowmatch
from seqrender.experiments.batching import scene_index
from seqrender.experiments.data.dynamic import GridScenes
from seqrender.experiments.data.seeding import generator_from


def given_cells(views: int, times: int) -> Tensor:
    """(V, T) bool: True on the given first row and first column."""
    v, t = torch.meshgrid(torch.arange(views), torch.arange(times), indexing="ij")
    return (v == 0) | (t == 0)


def grid_velocity(model: nn.Module, z: Tensor, t: Tensor, *, x: Tensor, drop_condition: Tensor) -> Tensor:
    """Velocity (B, V, T, C, H, W) of z (B, V, T, C, H, W) at t (B,), conditioned on the first row
    and column of the clean grid x (same shape); samples with drop_condition (B,) True get none."""
    out = model(z, t, row=x[:, 0], column=x[:, :, 0])
    if drop_condition.any():
        out = out.clone()
        out[drop_condition] = model(z[drop_condition], t[drop_condition])
    return out


@dataclass
class GridBatch:
    """x, noise (B, V, T, 3, H, W) with x in [-1, 1]; t (B,); drop_condition (B,) bool."""

    x: Tensor
    noise: Tensor
    t: Tensor
    drop_condition: Tensor

    def to(self, device: torch.device) -> "GridBatch":
        return GridBatch(**{k: v.to(device) for k, v in vars(self).items()})

    def given(self) -> Tensor:
        """(V, T) bool, the given cells."""
        return given_cells(*self.x.shape[1:3]).to(self.x.device)

    def noised(self) -> Tensor:
        """z_t (B, V, T, 3, H, W): unknown cells on the path (1 − t)x + tε, given cells clean."""
        z = flowmatch.interpolate(self.x, self.noise, self.t)
        return torch.where(self.given()[:, :, None, None, None], self.x, z)


def make_grid_batch(scenes: GridScenes, *, seed: int, step: int, indices: range, batch_size: int, sampler,
                    cond_drop_prob: float) -> GridBatch:
    """Samples `indices` (global indices within step `step`'s batch of `batch_size`): whole grids."""
    parts = []
    for g in indices:
        gen = generator_from(seed, step, g)
        x = scenes.images[scene_index(seed, step * batch_size + g, len(scenes))] * 2 - 1
        t = sampler.sample(1, generator=gen)[0].float()
        parts.append(dict(x=x, t=t, noise=torch.randn(x.shape, generator=gen),
                          drop_condition=torch.rand((), generator=gen) < cond_drop_prob))
    return GridBatch(**{k: torch.stack([p[k] for p in parts]) for k in parts[0]})


def grid_flow_loss(model: nn.Module, batch: GridBatch) -> Tensor:
    """Velocity MSE on the unknown cells: mean per sample over them, then over samples. Scalar."""
    pred = grid_velocity(model, batch.noised(), batch.t, x=batch.x, drop_condition=batch.drop_condition)
    err = (pred - (batch.noise - batch.x)).pow(2).mean(dim=(3, 4, 5))          # (B, V, T)
    unknown = (~batch.given()).to(err.dtype)
    return ((err * unknown).sum((1, 2)) / unknown.sum()).mean()
