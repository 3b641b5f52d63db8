"""Curricula: stages of `experiments/run.py` run in order, each starting from the previous stage's
weights (`trainer.init_from`, weights only). The paper trains Kaleido on video first (θ_t positions,
no poses), then on 3D scenes (poses), at growing resolution (App. B, Table 5).

A curriculum is `experiments/configs/curriculum/<name>.yaml`: `common` overrides for every stage and
`stages` ({name, overrides}). Stage i runs in `<out>/<name>`; a stage with a `metrics.json` is done
and skipped, so a killed curriculum reruns from the stage it was in (which itself resumes from its
checkpoints). A failing stage stops the curriculum with its exit status and one line naming it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CURRICULA = Path(__file__).resolve().parents[3] / "configs" / "curriculum"
RUN = Path(__file__).resolve().parents[3] / "run.py"


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    overrides: list[str] = []


class Curriculum(BaseModel):
    model_config = ConfigDict(extra="forbid")
    common: list[str] = []
    stages: list[Stage] = Field(min_length=1)


def load_curriculum(name: str) -> Curriculum:
    """`<CURRICULA>/<name>.yaml` (or a path to a .yaml file), validated; ValueError in one line."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else CURRICULA / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CURRICULA.glob("*.yaml")))
        raise ValueError(f"curriculum {name!r}: no file {path} (known: {known})")
    try:
        return Curriculum(**(OmegaConf.to_container(OmegaConf.load(path)) or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def stage_commands(curriculum: Curriculum, out: Path, extra: list[str]) -> list[tuple[Stage, list[str]]]:
    """(stage, run.py arguments) in order; stage i > 0 starts from stage i − 1's run dir."""
    commands, previous = [], None
    for stage in curriculum.stages:
        args = [*curriculum.common, *stage.overrides, *extra, f"hydra.run.dir={out / stage.name}"]
        if previous is not None:
            args.append(f"trainer.init_from={previous}")
        commands.append((stage, args))
        previous = out / stage.name
    return commands


def run_curriculum(name: str, out: Path, extra: list[str]) -> int:
    """Run the stages not yet done; 0 when all are done, else the failing stage's exit status."""
    for stage, args in stage_commands(load_curriculum(name), out, extra):
        if (out / stage.name / "metrics.json").is_file():
            print(f"stage {stage.name}: done ({out / stage.name}); skipped", flush=True)
            continue
        print(f"stage {stage.name}: python experiments/run.py {' '.join(args)}", flush=True)
        code = subprocess.call([sys.executable, str(RUN), *args])
        if code:
            print(f"error: curriculum {name}: stage {stage.name} failed (exit {code}); rerun to continue",
                  file=sys.stderr)
            return code
    print(f"curriculum {name}: {len(load_curriculum(name).stages)} stages done; outputs in {out}", flush=True)
    return 0
