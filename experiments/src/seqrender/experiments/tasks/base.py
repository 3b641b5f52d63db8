"""The `Task` interface and its registry (see the package docstring)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from seqrender.experiments.config import RunConfig

# draw(step, indices) -> the batch of those global sample indices of step `step` (a pure function)
Draw = Callable[[int, range], Any]


def frame_time(cfg: RunConfig) -> bool:
    """Whether training draws one t per frame (view or grid cell): the model conditions each frame on
    its own t (`TransformerConfig.frame_time`); otherwise one t per sample, the papers' reading."""
    return bool(getattr(cfg.model.config, "frame_time", False))


class Task:
    """What one kind of run trains on and how it is scored. Subclasses set `name` and `layout` (the
    dataset layout it reads, `layouts.dataset_layout`) and implement the methods below."""

    name: str = ""
    layout: str = ""

    def load(self, cfg: RunConfig, split: str) -> Any:
        """All data of `split` ("train" / "heldout"), generated first if missing."""
        raise NotImplementedError

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """The model with its initial weights a function of `cfg.seed` only."""
        torch.manual_seed(cfg.seed)
        return cfg.model.build(posenc=cfg.posenc.name, posenc_cfg=cfg.posenc.config)

    def batches(self, cfg: RunConfig, data: Any, sampler) -> Draw:
        """`draw(step, indices)`: training batches, a pure function of (seed, step, sample index)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Scalar training loss of `model` on one batch (mean over samples, so DDP slices average)."""
        raise NotImplementedError

    def evaluate(self, cfg: RunConfig, heldout: Any, models: dict[str, nn.Module], *,
                 progress: bool = True) -> tuple[dict, dict]:
        """({setting: {method: scores with 95 % intervals}}, {setting: (batches, predictions)} of
        "trained"), with the task's baselines among the methods."""
        raise NotImplementedError

    def score_trained(self, cfg: RunConfig, heldout: Any, ema: nn.Module) -> dict:
        """{setting: scores of the EMA model alone} (milestones)."""
        results, _ = self.evaluate(cfg, heldout, {"trained": ema}, progress=False)
        return {setting: rows["trained"] for setting, rows in results.items()}

    def pictures(self, cfg: RunConfig, heldout: Any, ema: nn.Module, run_dir) -> dict:
        """Write task-specific pictures beside metrics.json; returns extra metrics ({} by default)."""
        return {}


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def task_names() -> list[str]:
    return sorted(TASKS)


def task_for(cfg: RunConfig) -> Task:
    """`cfg.task` if set, else the model config class's `task` attribute, else the task of the
    model's layout."""
    from seqrender.experiments.layouts import model_layout
    from seqrender.models import registry

    own = getattr(registry.config_class("model", cfg.model.name), "task", None)
    name = getattr(cfg, "task", None) or own or model_layout(cfg.model.name)
    return TASKS[name]
