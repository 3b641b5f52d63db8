"""Finding and loading the EMA weights a render uses, and the run config they were trained with."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from safetensors import safe_open
from torch import nn

from seqrender.experiments.checkpoint import latest_checkpoint
from seqrender.experiments.config import ConfigError, RunConfig, validate_config
from seqrender.experiments.render import RenderError

HINT = "a run dir (with checkpoints/), a step_* checkpoint dir, or an ema .safetensors file"


def weights_file(path: Path) -> Path:
    """The EMA weights file named by `render.checkpoint`."""
    if path.is_file():
        return path
    for ckpt in (latest_checkpoint(path / "checkpoints"), path):
        if ckpt is not None and (ckpt / "ema.safetensors").is_file():
            return ckpt / "ema.safetensors"
    raise RenderError(f"render.checkpoint: {path}: no checkpoint found; give {HINT}")


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


def load_weights(model: nn.Module, weights: Path, description: str) -> None:
    """Load `weights` into `model`; RenderError naming the first tensor that does not fit."""
    expected = model.state_dict()
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for foreign files
        raise RenderError(f"render.checkpoint: {weights}: not a safetensors weights file ({err})") from None
    problem = next((f"has no tensor '{k}'" for k in expected if k not in shapes), None)
    problem = problem or next((f"has an extra tensor '{k}'" for k in shapes if k not in expected), None)
    problem = problem or next((f"'{k}' is {shapes[k]}, the model's is {tuple(v.shape)}"
                               for k, v in expected.items() if shapes[k] != tuple(v.shape)), None)
    if problem:
        raise RenderError(f"render.checkpoint: {weights} does not fit {description}: {problem} "
                          f"(another model or size? give the run dir, or the model.* overrides it was trained with)")
    from safetensors.torch import load_model

    load_model(model, str(weights))
