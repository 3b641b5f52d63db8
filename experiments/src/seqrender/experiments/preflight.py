"""Checks that run after validation and before any data is rendered or a job trains, so a doomed
run fails in a second, with one line naming the field, instead of after minutes of work.

`preflight(cfg, run_dir)` raises ConfigError / UserError (exit 2). It builds the model once (cheap:
construction errors such as a head size the positional encoding cannot use surface here), checks
that the patch size divides the image size, that a training sample's views exist in the dataset,
that a Blender root exists, that the global batch splits evenly over the processes (and, on CUDA,
that each local rank has a GPU), that the tracker's package imports, and that the run directory can
be written. `check_writable(path)` is also used before Hydra creates the run dir.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from seqrender.experiments.checkpoint import checkpoint_dirs
from seqrender.experiments.config import ConfigError, RunConfig
from seqrender.experiments.data.dataset import BlenderConfig
from seqrender.experiments.failures import UserError
from seqrender.experiments.layouts import model_layout
from seqrender.experiments.tracking import check_available


def preflight(cfg: RunConfig, run_dir: Path) -> None:
    check_writable(run_dir)
    check_model(cfg)
    check_patch(cfg)
    check_views(cfg)
    check_dataset_root(cfg)
    check_processes(cfg)
    check_available(cfg.trainer.tracker)
    check_init_from(cfg, run_dir)


def check_model(cfg: RunConfig) -> None:
    from seqrender.experiments.train import build_model

    try:
        build_model(cfg)
    except (ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"model: cannot build {cfg.model.name!r} with posenc {cfg.posenc.name!r}: "
                          f"{str(exc).splitlines()[0]}") from None


def check_patch(cfg: RunConfig) -> None:
    patch = getattr(cfg.model.config, "patch_size", None)
    resolution = getattr(cfg.dataset.config, "resolution", None)
    sizes = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution or ())
    if patch and any(size % patch for size in sizes):
        raise ConfigError(f"model.patch_size: {patch} does not divide dataset.resolution={resolution}; "
                          f"choose sizes with resolution a multiple of patch_size")


def check_views(cfg: RunConfig) -> None:
    """trainer.views fits the frames a scene keeps (views_per_scene, frames_per_scene, or a clip's times)."""
    field = next((f for f in ("views_per_scene", "frames_per_scene") if hasattr(cfg.dataset.config, f)), None)
    if cfg.dataset.name == "embedded_video":
        field = "times"
    available = getattr(cfg.dataset.config, field) if field else None
    if model_layout(cfg.model.name) == "multiview" and available is not None and cfg.trainer.views > available:
        raise ConfigError(f"trainer.views: {cfg.trainer.views} views per sample, but the dataset has "
                          f"dataset.{field}={available} per scene")


def check_dataset_root(cfg: RunConfig) -> None:
    config = cfg.dataset.config
    if isinstance(config, BlenderConfig) and not Path(config.root).is_dir():
        raise ConfigError(f"dataset.root: {config.root!r} is not a folder (dataset=blender needs the folder "
                          f"holding the scene folders)")


def check_processes(cfg: RunConfig) -> None:
    from accelerate import PartialState

    from seqrender.experiments.cluster import export_distributed_env

    export_distributed_env()
    processes = PartialState(cpu=cfg.trainer.cpu).num_processes
    if cfg.trainer.batch_size % processes:
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} does not split evenly over the "
                          f"{processes} processes; use a multiple of {processes}")
    check_gpus_per_rank(cfg)


def check_gpus_per_rank(cfg: RunConfig) -> None:
    """On CUDA (trainer.cpu=false), the ranks `run.py` starts here each need a GPU of their own:
    accelerate puts local rank k on cuda:k, and NCCL refuses two ranks on one device. Checked where
    run.py launches the ranks (RANK unset); a cluster launcher (SLURM, torchrun) assigns GPUs itself."""
    import torch

    if cfg.trainer.cpu or "RANK" in os.environ or not torch.cuda.is_available():
        return
    ranks, gpus = cfg.trainer.local_processes, torch.cuda.device_count()
    if ranks > gpus:
        raise ConfigError(f"trainer.local_processes: {ranks} ranks on this machine, but it has {gpus} GPU"
                          f"{'s' if gpus != 1 else ''}; use trainer.local_processes={gpus} (and a "
                          f"trainer.batch_size it divides), or trainer.cpu=true")


def check_init_from(cfg: RunConfig, run_dir: Path) -> None:
    """trainer.init_from names weights that fit the model (unless the run resumes its own checkpoint)."""
    if cfg.trainer.init_from and not checkpoint_dirs(run_dir / "checkpoints"):
        from seqrender.experiments.init_from import init_from
        from seqrender.experiments.train import build_model

        init_from(cfg.trainer.init_from, build_model(cfg), build_model(cfg))


def check_writable(path: Path, key: str = "hydra.run.dir") -> None:
    """UserError unless files can be created in `path` (or, if it does not exist yet, in its
    nearest existing parent). Creates nothing that stays."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}: cannot create {path}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{key}: cannot write in {existing} ({exc.strerror})") from None
