"""Model weights from a finished or running run: the EMA `.safetensors` a path names, loaded with a
one-line error naming the first tensor that does not fit. Used by `render.checkpoint` and by
`trainer.init_from` (a curriculum stage starting from the previous stage's weights)."""
from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_model
from torch import nn

from seqrender.experiments.checkpoint import latest_checkpoint

HINT = "a run dir (with checkpoints/), a step_* checkpoint dir, or an ema .safetensors file"


def weights_file(path: Path, *, field: str, error: type[Exception] = ValueError) -> Path:
    """The EMA weights file named by `path` (a run dir, a step_* dir or the file itself)."""
    if path.is_file():
        return path
    for ckpt in (latest_checkpoint(path / "checkpoints"), path):
        if ckpt is not None and (ckpt / "ema.safetensors").is_file():
            return ckpt / "ema.safetensors"
    raise error(f"{field}: {path}: no checkpoint found; give {HINT}")


def load_weights(model: nn.Module, weights: Path, description: str, *, field: str,
                 error: type[Exception] = ValueError) -> None:
    """Load `weights` into `model`; `error` naming `field` and the first tensor that does not fit."""
    expected = model.state_dict()
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for foreign files
        raise error(f"{field}: {weights}: not a safetensors weights file ({err})") from None
    problem = next((f"has no tensor '{k}'" for k in expected if k not in shapes), None)
    problem = problem or next((f"has an extra tensor '{k}'" for k in shapes if k not in expected), None)
    problem = problem or next((f"'{k}' is {shapes[k]}, the model's is {tuple(v.shape)}"
                               for k, v in expected.items() if shapes[k] != tuple(v.shape)), None)
    if problem:
        raise error(f"{field}: {weights} does not fit {description}: {problem} "
                    f"(another model or size? give the run dir, or the model.* overrides it was trained with)")
    load_model(model, str(weights))
