"""4Real-Video-V2 training on V × T grids: given cells, the conditioned velocity, batches and loss.

As in 4Real-Video-V2 (§3.1), the first row (view 0 over time: a fixed-view video) and/or the first
column (time 0 over views: a freeze-time video) are given; the model generates the other cells.
A grid setting names what is given: "row->grid", "column->grid" or "row+column->grid"; training
draws one per sample from `trainer.grid_settings`.

Classifier-free guidance: the unconditional branch gets no row/column embedding AND its z has the
given cells blanked to zero, so it sees nothing of their content (the sampler holds given cells
clean in z; without the blanking the "unconditional" velocity could copy them). The same blanking
is used in training (condition dropout) and sampling.

Residual data space (`trainer.grid_residual`): the flow may generate each unknown cell's difference
from its copy baseline (`copy_anchor`: the given time-0 cell of its view when the column is given,
else the given view-0 cell of its time; `trainer.grid_anchor=row` prefers the latter when both are
given) instead of the cell itself; the sampler adds the copy back.
The paper gets "copy the given frame, then move it" from its pretrained video model; a pixel-space
model trained from scratch for minutes does not, and the residual space gives it that start.

Batches are a pure function of (seed, step, global sample index), like Kaleido's
(`batching.scene_index` orders the scenes; the stream keyed (seed, step, index) draws t, ε, the
condition-dropout coin and the grid setting), so resume and DDP slices draw what one uninterrupted
run draws.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqrender import flowmatch
from seqrender.experiments.batching import draw_times, scene_index, to_device
from seqrender.experiments.config import GRID_SETTINGS
from seqrender.experiments.data.dynamic import GridScenes
from seqrender.experiments.data.seeding import generator_from


def given_parts(setting: str) -> tuple[bool, bool]:
    """Grid setting ("row->grid", "column->grid", "row+column->grid") -> (row given, column given)."""
    if setting not in GRID_SETTINGS:
        raise ValueError(f"grid setting must be one of {', '.join(GRID_SETTINGS)}; got {setting!r}")
    given = setting.removesuffix("->grid").split("+")
    return "row" in given, "column" in given


def given_cells(views: int, times: int, setting: str = "row+column->grid") -> Tensor:
    """(V, T) bool: True on the cells `setting` gives (the first row and/or the first column)."""
    row, column = given_parts(setting)
    v, t = torch.meshgrid(torch.arange(views), torch.arange(times), indexing="ij")
    return ((v == 0) & row) | ((t == 0) & column)


def same_view_copy(x: Tensor) -> Tensor:
    """(B, V, T, C, H, W): every cell (v, t) of x replaced by the time-0 cell (v, 0) of its view."""
    return x[:, :, :1].expand_as(x)


def same_time_copy(x: Tensor) -> Tensor:
    """(B, V, T, C, H, W): every cell (v, t) of x replaced by the view-0 cell (0, t) of its time."""
    return x[:, :1].expand_as(x)


def copy_anchor(x: Tensor, given: Tensor, prefer: str = "column") -> Tensor:
    """(B, V, T, C, H, W): each unknown cell's copy baseline in the clean grid x (same shape): the given
    time-0 cell of its view (v, 0) when the sample's column is given, else the given view-0 cell of its
    time (0, t) when its row is (prefer="row": the row's cell first); zero on the given cells.
    given (B, V, T) bool."""
    column = (given[:, :, 0].all(1), same_view_copy(x))                   # ((B,) has it, its copy)
    row = (given[:, 0].all(1), same_time_copy(x))
    anchor = torch.zeros_like(x)
    for has, copy in ((row, column) if prefer == "column" else (column, row)):  # the preferred copy last
        anchor = torch.where(has[:, None, None, None, None, None], copy, anchor)
    return anchor.masked_fill(given[:, :, :, None, None, None], 0.0)


def grid_velocity(model: nn.Module, z: Tensor, t: Tensor, *, x: Tensor, given: Tensor,
                  drop_condition: Tensor) -> Tensor:
    """Velocity (B, V, T, C, H, W) of z (B, V, T, C, H, W) at t (B,) or per cell (B, V, T), conditioned on the cells of the
    clean grid x (same shape) that given (B, V, T) bool marks: the first row and/or column. Samples
    with drop_condition (B,) True are unconditional: no row/column and their given cells in z zeroed.
    One model call per group of samples with the same (row, column) conditioning."""
    blank = (given & drop_condition[:, None, None])[:, :, :, None, None, None]
    z = z.masked_fill(blank, 0.0)
    has_row = given[:, 0].all(1) & ~drop_condition                        # (B,)
    has_column = given[:, :, 0].all(1) & ~drop_condition                  # (B,)
    out = None
    for r, c in itertools.product((False, True), repeat=2):
        picked = (has_row == r) & (has_column == c)
        if not picked.any():
            continue
        if picked.all():
            return model(z, t, row=x[:, 0] if r else None, column=x[:, :, 0] if c else None)
        part = model(z[picked], t[picked], row=x[picked, 0] if r else None, column=x[picked, :, 0] if c else None)
        out = z.new_zeros(z.shape) if out is None else out
        out = out.index_put((picked,), part)
    return out


@dataclass
class GridBatch:
    """x, noise (B, V, T, 3, H, W) with x in [-1, 1]; t (B,), or (B, V, T) with one t per cell
    (`make_grid_batch(frame_times=True)`); given (B, V, T) bool (the given cells
    of each sample's setting); drop_condition (B,) bool; anchor (B, V, T, 3, H, W) or None: what the
    flow's data point is relative to (`copy_anchor` in the residual space; None: the cells themselves)."""

    x: Tensor
    noise: Tensor
    t: Tensor
    given: Tensor
    drop_condition: Tensor
    anchor: Tensor | None = None

    def to(self, device: torch.device) -> "GridBatch":
        return to_device(self, device)

    @property
    def target(self) -> Tensor:
        """(B, V, T, 3, H, W): the flow's data point, x − anchor (x on the given cells)."""
        return self.x if self.anchor is None else self.x - self.anchor

    def noised(self) -> Tensor:
        """z_t (B, V, T, 3, H, W): unknown cells on the path (1 − t)·target + tε, given cells clean."""
        z = flowmatch.interpolate(self.target, self.noise, self.t)
        return torch.where(self.given[:, :, :, None, None, None], self.x, z)


def make_grid_batch(scenes: GridScenes, *, seed: int, step: int, indices: range, batch_size: int, sampler,
                    cond_drop_prob: float, settings: tuple[str, ...] = ("row+column->grid",),
                    residual: bool = False, anchor: str = "column", frame_times: bool = False) -> GridBatch:
    """Samples `indices` (global indices within step `step`'s batch of `batch_size`): whole grids, each
    with a setting drawn uniformly from `settings` (repeat one to weight it). residual: the flow
    generates each unknown cell minus its `copy_anchor` (`anchor`: the copy preferred when both are given);
    frame_times: one t per grid cell (the model must take t (B, V, T))."""
    parts = []
    views, times = scenes.images.shape[1:3]
    for g in indices:
        gen = generator_from(seed, step, g)
        x = scenes.images[scene_index(seed, step * batch_size + g, len(scenes))] * 2 - 1
        t = draw_times(sampler, (views, times), per_frame=frame_times, generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        drop = torch.rand((), generator=gen) < cond_drop_prob
        setting = settings[int(torch.randint(len(settings), (), generator=gen))]
        parts.append(dict(x=x, t=t, noise=noise, given=given_cells(views, times, setting), drop_condition=drop))
    batch = GridBatch(**{k: torch.stack([p[k] for p in parts]) for k in parts[0]})
    if residual:
        batch.anchor = copy_anchor(batch.x, batch.given, prefer=anchor)
    return batch


def grid_flow_loss(model: nn.Module, batch: GridBatch) -> Tensor:
    """Velocity MSE on each sample's unknown cells: mean per sample over them, then over samples. Scalar."""
    pred = grid_velocity(model, batch.noised(), batch.t, x=batch.x, given=batch.given,
                         drop_condition=batch.drop_condition)
    err = (pred - (batch.noise - batch.target)).pow(2).mean(dim=(3, 4, 5))     # (B, V, T)
    unknown = (~batch.given).to(err.dtype)
    return ((err * unknown).sum((1, 2)) / unknown.sum((1, 2))).mean()
