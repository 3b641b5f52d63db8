"""The trained model sampled under several inference schedules at equal NFE (`eval.schedules`).

An eval-only ablation (Kaleido Table 4 (ix)): one training run, then its EMA weights are scored with
each listed schedule at the same `schedule.num_steps`, solver and guidance, on the same items and
noise. The configured schedule's row is the main evaluation's "trained" row (not sampled twice).
Written to metrics.json as `"schedules": {name: {setting: {"psnr", "ssim", ..._ci95}}}`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from seqrender.experiments.config import Component, RunConfig
from seqrender.models import registry


def with_schedule(cfg: RunConfig, name: str) -> RunConfig:
    """`cfg` with schedule `name` (its own defaults) at the configured number of steps (equal NFE)."""
    config = registry.config_class("schedule", name)()
    steps = getattr(cfg.schedule.config, "num_steps", None)
    if steps is not None and hasattr(config, "num_steps"):
        config = dataclasses.replace(config, num_steps=steps)
    return cfg.model_copy(update={"schedule": Component("schedule", name, config)})


def score_schedules(cfg: RunConfig, results: dict, score_trained: Callable[[RunConfig], dict]) -> dict:
    """{schedule: {setting: trained scores}} for every name in `cfg.eval.schedules`.

    results: the main evaluation ({setting: {method: scores}}); score_trained(cfg') scores the trained
    model with the sampler of cfg' ({setting: scores})."""
    out = {}
    for name in cfg.eval.schedules:
        if name == cfg.schedule.name:
            out[name] = {setting: rows["trained"] for setting, rows in results.items()}
        else:
            out[name] = score_trained(with_schedule(cfg, name))
    return out
