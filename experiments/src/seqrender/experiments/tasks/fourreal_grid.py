"""4Real-Video-V2 on V × T grids: the first row and/or column given, the other cells generated.

Batches and loss: `grid.make_grid_batch`, `grid.grid_flow_loss`. Evaluation: `grid_eval.evaluate_grid`
(the trained EMA, the untrained init and the copy baselines `row_same_time`, `column_same_view`), in
each of `eval.settings`; training draws its conditioning from `trainer.grid_settings`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqrender.experiments.data.dynamic import GridScenes
from seqrender.experiments.grid import GridBatch, grid_flow_loss, make_grid_batch
from seqrender.experiments.grid_eval import evaluate_grid
from seqrender.experiments.tasks.base import Task, frame_time, register


class FourRealGrid(Task):
    name = "grid"
    layout = "grid"

    def load(self, cfg, split: str) -> GridScenes:
        """Every cell of every grid of `split`: images (S, V, T, 3, H, W), ..."""
        grids = cfg.dataset.build(split=split)
        if len(grids) == 0:
            raise ValueError(f"dataset split {split!r} is empty: increase dataset.num_scenes")
        return grids

    def build_model(self, cfg) -> nn.Module:
        torch.manual_seed(cfg.seed)
        return cfg.model.build()  # 3-D RoPE built in, no camera encoding

    def batches(self, cfg, data: GridScenes, sampler):
        tc = cfg.trainer
        return lambda step, indices: make_grid_batch(data, seed=cfg.seed, step=step, indices=indices,
                                                     batch_size=tc.batch_size, sampler=sampler,
                                                     cond_drop_prob=tc.cond_drop_prob, settings=tc.grid_settings,
                                                     residual=tc.grid_residual, anchor=tc.grid_anchor,
                                                     frame_times=frame_time(cfg))

    def loss(self, model: nn.Module, batch: GridBatch) -> Tensor:
        return grid_flow_loss(model, batch)

    def evaluate(self, cfg, heldout: GridScenes, models, *, progress: bool = True):
        return evaluate_grid(cfg, heldout, models, progress=progress)


register(FourRealGrid())
