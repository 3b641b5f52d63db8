"""Command-line glue around the Hydra app in `experiments/run.py`.

Before Hydra composes: register everything (built-ins, datasets, entry-point plugins), mirror the
registry into the ConfigStore, and check every registry-kind group choice on the command line
(`posenc=xyz`, sweeps `posenc=rope,gta` included) so an unknown name is one line listing the
registered names; compose once on trial (unknown keys such as `trainer.nonexistent_key=1`, a run
dir that cannot be written). After composing: validate with pydantic, run the pre-flight checks
(`seqrender.experiments.preflight`), lock the run dir; a user error is one line naming the field
path. All exit with status 2 and no traceback; later failures follow `seqrender.experiments.failures`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqrender.experiments import failures, runlock, runlog
from seqrender.experiments.checkpoint import remove_temp_files
from seqrender.experiments.config import validate_config
from seqrender.experiments.configstore import mirror_registry, prepare_registry
from seqrender.experiments.preflight import check_writable, preflight
from seqrender.models import RegistryError, registry

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(failures.USAGE_ERROR)


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


def before_compose(argv: list[str], *, config_name: str = "config") -> DictConfig | None:
    """Registry + ConfigStore + command-line choice check + a trial composition of `config_name`
    (unknown keys, an unwritable run dir); exits 2 with one line on a user error. Returns the trial
    composition (with its `hydra` node), or None where it was skipped."""
    try:
        prepare_registry()
        mirror_registry()
        check_choices(argv)
        return check_composition(argv, config_name=config_name)
    except (RegistryError, failures.UserError) as exc:
        fail(f"error: {exc}")


def launch_locally(trial: DictConfig | None, argv: list[str], *, script: str) -> None:
    """Start `trainer.local_processes` ranks of `script` on this machine and exit with their status
    when the config asks for more than one (seqrender.experiments.local_launch); else return."""
    from seqrender.experiments import local_launch

    processes = int(OmegaConf.select(trial, "trainer.local_processes", default=1) or 1) if trial else 1
    folder = _resolved(trial, "hydra.run.dir") if trial else None
    if not local_launch.wanted(processes, argv) or folder is None:
        return
    check_before_launch(trial, Path(folder))
    threads = int(OmegaConf.select(trial, "threads", default=0) or 0)
    raise SystemExit(local_launch.launch(script, argv, processes=processes, run_dir=Path(folder), threads=threads))


def check_before_launch(trial: DictConfig, folder: Path) -> None:
    """Validate and pre-flight the trial composition before the local ranks start, so that a config
    error is one line from the launcher in a few seconds, not from each of N ranks after they have
    started (each rank checks again: a launcher such as SLURM starts ranks without this process)."""
    try:
        raw = OmegaConf.to_container(OmegaConf.masked_copy(trial, [k for k in trial if k != "hydra"]), resolve=True)
    except OmegaConfBaseException:
        return  # an interpolation only Hydra's run can resolve: the ranks check the config themselves
    with failures.reported(None):
        preflight(validate_config(raw), folder)


def check_composition(argv: list[str], *, config_name: str = "config") -> DictConfig | None:
    """Compose the config as Hydra will (without the swept keys) and check that the run (or sweep)
    directory can be written; returns the composition. Skipped (None) with Hydra flags other than
    -m, which Hydra handles itself."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, OverrideParseException

    flags = [a for a in argv if a.startswith("-")]
    if not CONFIG_DIR.is_dir() or any(f not in ("-m", "--multirun") for f in flags):
        return None
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        trial = [o for o in overrides if not OverridesParser.create().parse_override(o).is_sweep_override()]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=trial, return_hydra_config=True)
            key = "hydra.sweep.dir" if flags else "hydra.run.dir"
            folder = _resolved(cfg, key)
    except (ConfigCompositionException, OverrideParseException) as exc:
        fail(_one_line(exc))
    if folder:
        check_writable(Path(folder), key)
    return cfg


def _resolved(cfg: DictConfig, key: str) -> str | None:
    try:
        return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except OmegaConfBaseException:
        return None  # an interpolation only Hydra's run can resolve: it checks the folder itself


def _one_line(exc: Exception) -> str:
    """Hydra's multi-line composition message as one line; an unknown key names itself."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    key = re.search(r"full_key: (\S+)", text)
    if key and "not in struct" in text:
        return f"config error: {key.group(1)}: no such key in the config (to add a new key write +{key.group(1)}=...)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("object_type")]
    return "error: " + " ".join(lines)


def run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def task(cfg: DictConfig, *, stop_requested: Callable[[], bool] | None = None) -> dict:
    """The Hydra task: validate, pre-flight checks, lock the run dir, then run the main job in it;
    training polls `stop_requested` once per step (run.py passes cluster.preemptible()'s). Every
    failure is one line and a non-zero exit (seqrender.experiments.failures); console output is
    copied to `<run dir>/run.log`."""
    from accelerate import PartialState

    from seqrender.experiments.job import run_job

    directory = run_dir()
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    with runlog.teed(directory / "run.log"), failures.reported(directory, sweep=sweep):
        prepare_registry()  # again: a launcher may run the job in a fresh process
        run_cfg = validate_config(OmegaConf.to_container(cfg, resolve=True))
        preflight(run_cfg, directory)
        if run_cfg.threads:
            torch.set_num_threads(run_cfg.threads)
        try:
            with runlock.locked(directory, PartialState().process_index):
                if PartialState().is_main_process:
                    for path in remove_temp_files(directory):
                        print(f"removed the temporary file {path} left by an interrupted run")
                return run_job(run_cfg, run_dir=directory, stop_requested=stop_requested)
        finally:
            end_process_group()
    return {"status": "failed"}


def end_process_group() -> None:
    """Destroy the default process group of a multi-process run before the interpreter exits, as
    PyTorch asks. Left to interpreter teardown, a rank once aborted in CI with "terminate called
    without an active exception" after its run had finished (a C++ thread still joinable)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
