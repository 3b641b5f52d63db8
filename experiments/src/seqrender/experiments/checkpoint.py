"""Verified, atomic training checkpoints in `<run_dir>/checkpoints/`.

Layout of one checkpoint, `step_00000250/`:
- `model.safetensors`, `ema.safetensors` (weights), `state.pt` (optimiser, scheduler, grad scaler,
  RNG, data order, loss history);
- `manifest.json`: the step, each file's size and SHA-256, and the run's resolved config (flat
  dotted keys), written after the three files and checked against the files on disk right away.
Then the hint file `latest` names the directory. Every file is written to a temporary name in the
same directory, fsynced and `os.replace`d; a failed write removes its temporary file, and a full
disk is reported as `DiskFullError` naming the file.

Readers never trust `latest`: `checkpoint_dirs` scans `step_*` directories, `verify` checks a
directory against its manifest, and the trainer resumes from the newest one that verifies and loads
(`seqrender.experiments.resume`). `save_checkpoint` refuses to write below an intact newer step.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from seqrender.experiments.failures import DiskFullError, RunError, is_disk_full

LATEST = "latest"
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "ema.safetensors", "state.pt")
TEMP_PATTERN = ".*.tmp*"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it to `path`.
    On failure the temporary file is removed; a full disk raises DiskFullError naming `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and is_disk_full(exc):
            raise DiskFullError(f"no space left on the device while writing {path}; free some space and "
                                f"rerun (the checkpoints already written are intact)") from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def file_digest(path: Path) -> dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def step_of(ckpt: Path) -> int | None:
    match = _STEP_DIR.match(ckpt.name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(root: Path) -> list[Path]:
    """Every `step_*` directory under `root`, newest step first (found by scanning, not `latest`)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of, reverse=True)


def read_manifest(ckpt: Path) -> dict[str, Any]:
    """The manifest of `ckpt`; RunError with the reason if it is missing or unreadable."""
    path = ckpt / MANIFEST
    if not path.is_file():
        raise RunError(f"{path} is missing (the checkpoint was not completely written)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        manifest["step"] = int(manifest["step"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not a valid manifest ({exc})") from None
    if set(files) != set(FILES):
        raise RunError(f"{path} lists {sorted(files)}, expected {list(FILES)}")
    return manifest


def verify(ckpt: Path) -> str | None:
    """None if every file of `ckpt` has its manifest's size and checksum, else the first reason."""
    try:
        manifest = read_manifest(ckpt)
    except RunError as exc:
        return str(exc)
    for name, expected in manifest["files"].items():
        path = ckpt / name
        if not path.is_file():
            return f"{path} is missing"
        actual = file_digest(path)
        if actual["bytes"] != expected.get("bytes"):
            return f"{path} has {actual['bytes']} bytes, the manifest says {expected.get('bytes')} (truncated?)"
        if actual["sha256"] != expected.get("sha256"):
            return f"{path} does not match its SHA-256 checksum (corrupted)"
    return None


def nonfinite_parameter(module: nn.Module | dict[str, torch.Tensor]) -> str | None:
    """The name of the first parameter or buffer (or state-dict entry) holding NaN/Inf, or None."""
    named = module.items() if isinstance(module, dict) else [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in named:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def save_checkpoint(root: Path, step: int, *, model: nn.Module | dict[str, torch.Tensor], ema: nn.Module,
                    state: dict[str, Any], keep: int = 2, config: dict[str, Any] | None = None) -> Path:
    """Write checkpoint `step` under `root` (files, then a verified manifest, then `latest`), keep the
    newest `keep`. `model` may be a full state dict (a sharded run's gathered weights). Refuses
    non-finite weights and a step below an intact newer checkpoint."""
    for name, module in (("model", model), ("ema", ema)):
        bad = nonfinite_parameter(module)
        if bad is not None:
            raise RunError(f"not writing checkpoint step {step}: {name} weight {bad} is not finite")
    newer = [c for c in checkpoint_dirs(root) if step_of(c) > step and verify(c) is None]
    if newer:
        raise RunError(f"not writing checkpoint step {step}: {newer[0]} is newer and intact")
    ckpt = root / f"step_{step:08d}"
    atomic_write(ckpt / "model.safetensors", lambda p: _save_weights(model, p))
    atomic_write(ckpt / "ema.safetensors", lambda p: _save_weights(ema, p))
    buffer = io.BytesIO()
    torch.save(state, buffer)  # to memory first: torch.save hides ENOSPC behind "unexpected pos"
    write_bytes(ckpt / "state.pt", buffer.getvalue())
    manifest = {"step": step, "files": {name: file_digest(ckpt / name) for name in FILES}, "config": config}
    write_bytes(ckpt / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    problem = verify(ckpt)
    if problem:
        raise RunError(f"checkpoint step {step} failed verification right after writing: {problem}")
    write_bytes(root / LATEST, (ckpt.name + "\n").encode())
    for old in checkpoint_dirs(root)[keep:]:
        if step_of(old) < step:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def _save_weights(weights: nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    if isinstance(weights, dict):
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata={"format": "pt"})
    else:
        save_model(weights, str(path))


def latest_hint(root: Path) -> Path | None:
    """The directory `latest` names, if it names an existing one (a hint only: see `checkpoint_dirs`)."""
    pointer = root / LATEST
    try:
        ckpt = root / pointer.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return ckpt if ckpt.is_dir() and step_of(ckpt) is not None else None


def latest_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint directory that verifies against its manifest, or None."""
    return next((c for c in checkpoint_dirs(root) if verify(c) is None), None)


def load_checkpoint(ckpt: Path, *, model: nn.Module, ema: nn.Module) -> dict[str, Any]:
    """Load weights into `model` and `ema` (in place); return the state dict of `state.pt`. Raises
    RunError naming the file if a file does not load or holds non-finite weights."""
    for name, module in (("model.safetensors", model), ("ema.safetensors", ema)):
        path = ckpt / name
        try:
            load_model(module, str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise RunError(f"{path} does not load ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        bad = nonfinite_parameter(module)
        if bad is not None:
            raise RunError(f"{path} holds non-finite weights (first: {bad})")
    try:
        return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors
        raise RunError(f"{ckpt / 'state.pt'} does not load ({exc})") from None


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete temporary files left by an earlier process killed mid-write (call with the run dir
    locked, so none of them belongs to a live writer). Returns what was removed."""
    found = [*run_dir.glob(TEMP_PATTERN), *run_dir.glob(f"checkpoints/{TEMP_PATTERN}"),
             *run_dir.glob(f"checkpoints/step_*/{TEMP_PATTERN}")]
    for path in found:
        path.unlink(missing_ok=True)
    return found
