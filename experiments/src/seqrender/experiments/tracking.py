"""Experiment tracking (`trainer.tracker=tensorboard|wandb|none`) with accelerate's trackers.

TensorBoard is the default and works offline: event files go to `<run dir>/tensorboard/`
(`tensorboard --logdir <run or sweep dir>`). wandb is optional (`pip install wandb`) and runs in
offline mode (files under `<run dir>/wandb/`, `wandb sync` uploads them) unless WANDB_MODE is set.
Only the main process writes. Logged: every `trainer.log_every` steps the figures of the step log
(`train/loss` — the mean over the window, as printed —, `train/lr`, `train/grad_norm`,
`train/max_activation` and one `max_activation/block_<i>` per block, throughput); held-out scores
at the end and at each milestone (`eval/<setting>/<method>/<psnr|ssim>`); samples.png and orbit.png
as images at the final step.

Training opens the tracker right after resuming at step s, with TensorBoard's `purge_step` s + 1
(else it opens on the first record, purging from that step): a resumed run hides what the
interrupted one had logged past its checkpoint, so every curve keeps one value per step.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from seqrender.experiments.config import ConfigError

Tracker = Literal["tensorboard", "wandb", "none"]
LOG_DIR = "tensorboard"


def check_available(kind: Tracker) -> None:
    """ConfigError naming trainer.tracker if its package does not import."""
    module = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(kind)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"trainer.tracker: {kind} is not installed (pip install {module}); "
                          f"choose one of tensorboard, wandb, none") from None


class Tracking:
    """The run's tracker on the main process (`enabled`), else a no-op with the same methods."""

    def __init__(self, kind: Tracker, run_dir: Path, *, config: dict, enabled: bool = True):
        self.kind, self.run_dir, self.config = kind, Path(run_dir), config
        self.enabled = enabled and kind != "none"
        self.tracker = None

    def start(self, purge_from: int) -> None:
        """Open the tracker now (before timed work) unless open: a TensorBoard writer hides the steps
        >= `purge_from` that earlier event files of this run dir hold (they will be logged again)."""
        if self.enabled and self.tracker is None:
            self.tracker = self._open(purge_from)

    def _open(self, step: int):
        """accelerate's tracker for `kind`, started; the TensorBoard writer purges steps >= `step`."""
        from accelerate.tracking import TensorBoardTracker, WandBTracker

        if self.kind == "tensorboard":
            tracker = TensorBoardTracker(LOG_DIR, self.run_dir, purge_step=step)
        else:
            os.environ.setdefault("WANDB_MODE", "offline")  # no network unless the user asks for it
            tracker = WandBTracker(self.run_dir.name, dir=str(self.run_dir), config=self.config)
        tracker.start()
        return tracker

    def log(self, values: dict[str, float], step: int) -> None:
        """Scalars at `step` (non-finite values are kept: a NaN loss is worth seeing)."""
        if not self.enabled:
            return
        self.start(step)
        self.tracker.log({k: float(v) for k, v in values.items()}, step=step)
        self._flush()

    def log_eval(self, results: dict, step: int, prefix: str = "eval") -> None:
        """The numbers of nested results {setting: {method: {"psnr": ..., "ssim": ...}}} as
        `eval/<setting>/<method>/<metric>` (intervals and counts left out)."""
        self.log(dict(_scalar_leaves(results, prefix)), step)

    def log_images(self, paths: dict[str, Path], step: int) -> None:
        """PNG files as images (name -> file); missing files are skipped."""
        images = {name: np.asarray(Image.open(path).convert("RGB")) for name, path in paths.items() if path.is_file()}
        if not self.enabled or not images:
            return
        self.start(step)
        if self.kind == "tensorboard":
            for name, image in images.items():
                self.tracker.writer.add_image(name, image, global_step=step, dataformats="HWC")
        else:
            self.tracker.log_images({name: [image] for name, image in images.items()}, step=step)
        self._flush()

    def _flush(self) -> None:
        if self.kind == "tensorboard":
            self.tracker.writer.flush()

    def finish(self) -> None:
        if self.tracker is not None:
            self.tracker.finish()
            self.tracker = None


def _scalar_leaves(tree: dict, prefix: str):
    for key, value in tree.items():
        name = f"{prefix}/{str(key).replace('->', '_to_')}"
        if isinstance(value, dict):
            yield from _scalar_leaves(value, name)
        elif isinstance(value, float):
            yield name, value


def step_figures(loss: float, lr: float, grad_norm: float, max_act: list[float], rates: dict[str, float]) -> dict:
    """The tracked figures of one log step (see the module docstring for the names)."""
    figures = {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm}
    if max_act:
        figures["train/max_activation"] = max(max_act)
        figures.update({f"max_activation/block_{i}": v for i, v in enumerate(max_act)})
    figures.update({f"throughput/{k}": v for k, v in rates.items()})
    return figures
