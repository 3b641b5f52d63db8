"""Finding and loading the EMA weights a render uses, and the run config they were trained with."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from torch import nn

from seqrender.experiments import weights as shared
from seqrender.experiments.config import ConfigError, RunConfig, validate_config
from seqrender.experiments.render import RenderError


def weights_file(path: Path) -> Path:
    """The EMA weights file named by `render.checkpoint`."""
    return shared.weights_file(path, field="render.checkpoint", error=RenderError)


def trained_config(weights: Path) -> RunConfig | None:
    """The validated run config of the run that wrote `weights` (its .hydra/config.yaml), if any."""
    for folder in list(weights.parents)[:3]:
        path = folder / ".hydra" / "config.yaml"
        if path.is_file():
            try:
                return validate_config(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
            except ConfigError as err:
                raise RenderError(f"render.checkpoint: {path}: {err}") from None
    return None


def load_weights(model: nn.Module, path: Path, description: str) -> None:
    """Load `path` into `model`; RenderError naming the first tensor that does not fit."""
    shared.load_weights(model, path, description, field="render.checkpoint", error=RenderError)
