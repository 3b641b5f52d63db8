"""Train specs: one registered `Task` per kind of run, owning its data, batches, loss and evaluation.

The training loop (`train.py`), the main job (`job.py`) and the milestone scorer ask the task; they
never branch on the dataset's type. A new kind of run is a new file in this package that subclasses
`Task` and calls `register`. `task_for(cfg)` picks `cfg.task` when set, else the task registered for
the model's layout ("multiview": Kaleido, "grid": 4Real-Video-V2), as torchtitan's train specs do.
"""
from __future__ import annotations

from seqrender.experiments.tasks.base import TASKS, Task, register, task_for, task_names

# The built-in tasks register themselves on import.
from seqrender.experiments.tasks import fourreal_grid, kaleido_views, recon  # noqa: E402,F401

__all__ = ["TASKS", "Task", "register", "task_for", "task_names"]
