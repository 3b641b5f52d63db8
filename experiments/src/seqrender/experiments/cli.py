"""Command-line glue around the Hydra app in `experiments/run.py`.

Before Hydra composes: register everything (built-ins, datasets, entry-point plugins), mirror the
registry into the ConfigStore, and check every registry-kind group choice on the command line
(`posenc=xyz`, sweeps `posenc=rope,gta` included) so an unknown name is one line listing the
registered names. After composing: validate with pydantic; a user error is one line naming the
field path. Both exit with status 2 and no traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from seqrender.experiments.config import ConfigError, RunConfig, validate_config
from seqrender.experiments.configstore import mirror_registry, prepare_registry
from seqrender.experiments.data.scene_dataset import DataError
from seqrender.models import RegistryError, registry

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def check_choices(overrides: list[str]) -> None:
    """Raise RegistryError for a registry-kind group choice that names nothing registered."""
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("-")])
    except HydraException:
        return  # malformed overrides: Hydra reports them itself
    kinds = set(registry.kinds())
    for override in parsed:
        if override.key_or_group not in kinds or override.is_delete():
            continue
        if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
            choices = list(override.sweep_string_iterator())
        elif override.is_sweep_override():
            continue  # glob/range sweeps select among registered options by construction
        else:
            choices = [override.get_value_element_as_str()]
        for name in choices:
            registry.entry(override.key_or_group, name)


def before_compose(argv: list[str]) -> None:
    """Registry + ConfigStore + command-line choice check; exits 2 with one line on a user error."""
    try:
        prepare_registry()
        mirror_registry()
        check_choices(argv)
    except RegistryError as exc:
        fail(f"error: {exc}")


def validated(cfg: DictConfig) -> RunConfig:
    """The composed config as a RunConfig; exits 2 with one `config error: <path>: ...` line."""
    prepare_registry()  # again: a launcher may run the job in a fresh process
    try:
        return validate_config(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as exc:
        fail(f"config error: {exc}")


def run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def task(cfg: DictConfig, *, stop_requested: Callable[[], bool] | None = None) -> dict:
    """The Hydra task: validate, then run the main job in the Hydra run directory; training polls
    `stop_requested` once per step (run.py passes cluster.preemptible()'s)."""
    from seqrender.experiments.job import run_job

    run_cfg = validated(cfg)
    if run_cfg.threads:
        torch.set_num_threads(run_cfg.threads)
    try:
        return run_job(run_cfg, run_dir=run_dir(), stop_requested=stop_requested)
    except DataError as exc:  # bad files on disk: one line naming the file and the problem
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(f"data error: {exc}")
