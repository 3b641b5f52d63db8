"""Held-out evaluation of 4Real-Video-V2 in the grid settings "row->grid", "column->grid" and
"row+column->grid": the first row and/or first column of each held-out grid are given, the other
cells are generated and scored (PSNR / SSIM via `evaluate.score`, averaged over all unknown cells).

Eval item i is held-out scene i mod S with its noise from the stream keyed (eval seed, i, 1).
Methods: the trained EMA sampled with the configured schedule/solver/guidance; the untrained init
(its zero-initialised final layer makes its velocity exactly zero, so every sampler returns the
noise: scored with one step, as in `evaluate.evaluate`); the copy baselines of what the setting
gives: `row_same_time` (copy the given view-0 cell of the same time; needs the row) and
`column_same_view` (copy the given time-0 cell of the same view; needs the column).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqrender.experiments.config import RunConfig
from seqrender.experiments.data.dynamic import GridScenes
from seqrender.experiments.data.seeding import generator_from
from seqrender.experiments.evaluate import Method, device_of, one_step, sampling_method, score_methods
from seqrender.experiments.grid import (copy_anchor, given_cells, given_parts, grid_velocity, same_time_copy,
                                       same_view_copy)


@dataclass
class GridEvalBatch:
    """images, noise (B, V, T, 3, H, W), images in [0, 1]; is_reference (B, V, T) bool (given cells)."""

    images: Tensor
    is_reference: Tensor
    noise: Tensor


def grid_eval_batches(scenes: GridScenes, *, num_items: int, batch_size: int, seed: int,
                      setting: str = "row+column->grid"):
    """Yield GridEvalBatch objects covering items 0..num_items-1, the cells of `setting` given."""
    given = given_cells(*scenes.images.shape[1:3], setting)
    for start in range(0, num_items, batch_size):
        items = range(start, min(num_items, start + batch_size))
        images = torch.stack([scenes.images[i % len(scenes)] for i in items])
        yield GridEvalBatch(
            images=images,
            is_reference=given.expand(len(items), *given.shape),
            noise=torch.stack([torch.randn(images.shape[1:], generator=generator_from(seed, i, 1)) for i in items]),
        )


def grid_model_method(model: nn.Module, cfg: RunConfig) -> Method:
    """Sample the unknown cells with the configured schedule, solver and guidance; given cells stay clean.
    A `trainer.grid_residual` model samples each unknown cell's difference from its copy baseline."""
    def velocity_for(batch: GridEvalBatch, x: Tensor):
        def velocity(z: Tensor, t: Tensor, *, drop_condition: Tensor) -> Tensor:
            rep = z.shape[0] // x.shape[0]      # 2 when CFG batches conditional + unconditional
            return grid_velocity(model, z, t, x=x.repeat(rep, 1, 1, 1, 1, 1),
                                 given=batch.is_reference.repeat(rep, 1, 1), drop_condition=drop_condition)
        return velocity

    prefer = cfg.trainer.grid_anchor
    anchor_for = (lambda batch, x: copy_anchor(x, batch.is_reference, prefer)) if cfg.trainer.grid_residual else None
    return sampling_method(cfg, velocity_for, anchor_for=anchor_for, device=device_of(model))


def row_same_time(batch: GridEvalBatch) -> Tensor:
    """Every cell (v, t) predicted as the given first-row cell (0, t)."""
    return same_time_copy(batch.images)


def column_same_view(batch: GridEvalBatch) -> Tensor:
    """Every cell (v, t) predicted as the given first-column cell (v, 0)."""
    return same_view_copy(batch.images)


def copy_baselines(setting: str) -> dict[str, Method]:
    """The copy baselines that only use what `setting` gives."""
    row, column = given_parts(setting)
    return {name: method for name, method, usable in (("row_same_time", row_same_time, row),
                                                      ("column_same_view", column_same_view, column)) if usable}


def evaluate_grid(cfg: RunConfig, scenes: GridScenes, models: dict[str, nn.Module], *, progress: bool = True):
    """{setting: {method: scores with 95 % intervals}} and, per setting, (batches, trained predictions)."""
    sampled = {name: grid_model_method(m.eval(), cfg if name == "trained" else one_step(cfg))
               for name, m in models.items()}
    results, samples = {}, {}
    for setting in cfg.eval.settings:
        batches = list(grid_eval_batches(scenes, num_items=cfg.eval.num_items, batch_size=cfg.eval.batch_size,
                                         seed=cfg.eval.seed, setting=setting))
        methods = sampled | copy_baselines(setting)
        results[setting], outputs = score_methods({name: (m, batches) for name, m in methods.items()},
                                                  bootstrap=cfg.eval.bootstrap_samples, progress=progress,
                                                  desc=f"eval {setting}")
        samples[setting] = outputs["trained"]
    return results, samples
