"""Atomic training checkpoints in `<run_dir>/checkpoints/`.

Layout: `step_00000250/{model,ema}.safetensors` (weights) and `step_00000250/state.pt` (optimiser,
scheduler, grad scaler, RNG, data order, loss history), then the pointer file `latest` naming that
directory. Every file is written to a temporary name in the same directory, fsynced and
`os.replace`d, and `latest` is replaced last: a reader that follows `latest` never sees a partial
checkpoint, whenever the writer was killed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_model, save_model
from torch import nn

LATEST = "latest"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(root: Path, step: int, *, model: nn.Module, ema: nn.Module, state: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write checkpoint `step` under `root`, point `latest` at it, keep the newest `keep`."""
    ckpt = root / f"step_{step:08d}"
    atomic_write(ckpt / "model.safetensors", lambda p: save_model(model, str(p)))
    atomic_write(ckpt / "ema.safetensors", lambda p: save_model(ema, str(p)))
    atomic_write(ckpt / "state.pt", lambda p: torch.save(state, p))
    atomic_write(root / LATEST, lambda p: p.write_text(ckpt.name + "\n"))
    for old in sorted(root.glob("step_*"))[:-keep]:
        if old != ckpt:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def latest_checkpoint(root: Path) -> Path | None:
    """The directory `latest` points to (complete by construction), or None if there is none."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    ckpt = root / pointer.read_text().strip()
    return ckpt if ckpt.is_dir() else None


def load_checkpoint(ckpt: Path, *, model: nn.Module, ema: nn.Module) -> dict[str, Any]:
    """Load weights into `model` and `ema` (in place); return the state dict of `state.pt`."""
    load_model(model, str(ckpt / "model.safetensors"))
    load_model(ema, str(ckpt / "ema.safetensors"))
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
