"""`trainer.init_from`: start a run from another run's weights (a curriculum stage from the previous
stage), weights only: the optimiser, schedule, step count and EMA history start afresh.

The path is a run dir (its newest checkpoint), a `step_*` checkpoint dir or a `.safetensors` file;
the EMA weights are used, for both the trained model and its EMA. A model that does not fit (other
sizes, other channels) is a one-line `UserError` naming the first tensor. A run that resumes from its
own checkpoint ignores `init_from` (the checkpoint holds newer weights).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from seqrender.experiments.failures import UserError
from seqrender.experiments.weights import load_weights, weights_file

FIELD = "trainer.init_from"


def init_from(path: str, model: nn.Module, ema: nn.Module) -> Path:
    """Load the EMA weights named by `path` into `model` and `ema`; returns the weights file."""
    weights = weights_file(Path(path), field=FIELD, error=UserError)
    load_weights(model, weights, f"this run's model ({type(model).__name__})", field=FIELD, error=UserError)
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.copy_(p)
    return weights
