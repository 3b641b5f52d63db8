"""Resuming a run: the newest checkpoint that verifies, loads and has finite weights, trained with a
compatible config.

Checkpoints are found by scanning `checkpoints/step_*` (`latest` is only a hint). Each candidate,
newest first, is checked against its manifest (sizes, SHA-256), then its config is compared with the
current one, then it is loaded (non-finite weights refuse it). A refused checkpoint is reported as
`skipping checkpoint step_…: <reason>` and later moved to `checkpoints/skipped/` (kept, never
deleted), so the resumed run can write the steps again. If checkpoints exist but none is usable the
run stops with one line (exit 1) instead of silently starting over.

Keys that may change on resume (`MAY_CHANGE`): the number of steps, logging / checkpoint cadence and
everything about evaluation and sampling. Any other difference stops the run with one line listing
the keys (exit 2): use a new `hydra.run.dir` for a different model or data.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from torch import nn

from seqrender.experiments.checkpoint import (checkpoint_dirs, latest_hint, load_checkpoint, read_manifest,
                                              verify)
from seqrender.experiments.config import ConfigError, RunConfig
from seqrender.experiments.failures import RunError

MAY_CHANGE = ("trainer.steps", "trainer.progress", "trainer.log_every", "trainer.checkpoint_every",
              "trainer.keep_checkpoints", "trainer.max_nonfinite_steps", "trainer.cpu",
              "trainer.activation_checkpointing", "trainer.local_processes", "trainer.sharding", "trainer.tracker",
              "trainer.stream", "trainer.data_workers", "threads", "eval.*", "schedule.*", "solver.*")
SKIPPED = "skipped"
# Keys added after checkpoints were first written: a manifest without them was trained with this value.
ADDED_KEYS = {"trainer.view_sampling": "exponential", "trainer.fixed_references": 1, "task": None,
              "trainer.init_from": None, "trainer.grid_settings": ["row+column->grid"],
              "trainer.grid_residual": False, "trainer.grid_anchor": "column",
              "model.prediction": "velocity", "model.prediction_eps": 0.05,
              "dataset.view_step_deg": None, "dataset.motion": "free", "model.output_conv": False,
              "model.pixel_head": 0, "model.absolute_positions": False, "model.frame_time": False}


def flat_config(cfg: RunConfig) -> dict[str, Any]:
    """The resolved run config as JSON values under dotted keys, e.g. {"model.hidden": 128, ...}."""
    nested: dict[str, Any] = {"seed": cfg.seed, "threads": cfg.threads, "task": cfg.task,
                              "trainer": cfg.trainer.model_dump(), "eval": cfg.eval.model_dump()}
    for kind in ("model", "posenc", "sampler", "schedule", "solver", "dataset"):
        component = getattr(cfg, kind)
        nested[kind] = {"name": component.name, **dataclasses.asdict(component.config)}
    return json.loads(json.dumps(flatten(nested)))  # tuples -> lists, as read back from a manifest


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict under dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def may_change(key: str) -> bool:
    return any(key == k or (k.endswith(".*") and key.startswith(k[:-1])) for k in MAY_CHANGE)


def config_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """`key (saved -> current)` for every key outside MAY_CHANGE that differs ([] if nothing saved)."""
    if not saved:
        return []
    missing = object()
    saved = {**{k: v for k, v in ADDED_KEYS.items() if k in current}, **saved}
    keys = sorted((set(saved) | set(current)))
    return [f"{k} ({saved.get(k, 'unset')!r} -> {current.get(k, 'unset')!r})" for k in keys
            if not may_change(k) and saved.get(k, missing) != current.get(k, missing)]


def resume(root: Path, *, model: nn.Module, ema: nn.Module, config: dict[str, Any]) -> tuple[dict, list[Path]]:
    """Load the newest usable checkpoint under `root` into `model` and `ema`.

    Returns (its state dict or {} when there is no checkpoint, the refused newer checkpoints).
    Raises ConfigError if its config differs outside MAY_CHANGE, RunError if none is usable."""
    candidates = checkpoint_dirs(root)
    if candidates and latest_hint(root) is None:
        print(f"note: {root / 'latest'} is missing or names no checkpoint; found {len(candidates)} by scanning")
    skipped: list[Path] = []
    for ckpt in candidates:
        problem = verify(ckpt)
        if problem is None:
            changes = config_changes(read_manifest(ckpt).get("config"), config)
            if changes:
                raise ConfigError(f"cannot resume {ckpt}: config keys differ from the checkpoint's: "
                                  f"{', '.join(changes)}; only {', '.join(MAY_CHANGE)} may change on resume "
                                  f"(choose a new hydra.run.dir for another config)")
            try:
                state = load_checkpoint(ckpt, model=model, ema=ema)
            except RunError as exc:
                problem = str(exc)
            else:
                print(f"resuming from {ckpt} (step {state['step']})", flush=True)
                return state, skipped
        print(f"skipping checkpoint {ckpt.name}: {problem}", flush=True)
        skipped.append(ckpt)
    if candidates:
        raise RunError(f"no usable checkpoint in {root} ({len(candidates)} found, all refused: see the lines "
                       f"above); move {root} away to train from scratch")
    return {}, skipped


def set_aside(skipped: list[Path]) -> None:
    """Move refused checkpoints to `checkpoints/skipped/` (kept for inspection, out of the scan)."""
    for ckpt in skipped:
        target = ckpt.parent / SKIPPED / ckpt.name
        n = 1
        while target.exists():
            target, n = ckpt.parent / SKIPPED / f"{ckpt.name}.{n}", n + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        ckpt.rename(target)
        print(f"moved the skipped checkpoint {ckpt.name} to {target}", flush=True)
