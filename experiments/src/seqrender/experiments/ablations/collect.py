"""Read a sweep directory (`run.py -m ...`): every job's overrides, seed and trained-model scores.

A job is `<sweep dir>/<n>/` with Hydra's `.hydra/{overrides,config,hydra}.yaml` and our
`metrics.json`. Each finished job gives one `Entry` per arm it scored: normally one, the "trained" row
of every eval setting; with `eval.schedules` one per schedule (the `"schedules"` section), the
schedule being the arm. Failed or unfinished jobs are listed as skipped, with their reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from seqrender.experiments.failures import UserError, read_error

METRICS = "metrics.json"


@dataclass(frozen=True)
class Entry:
    """One scored arm of one job: overrides {key: value} of the job's command line (seed included);
    arm: the overrides, plus "schedule" for an `eval.schedules` entry; scores {eval setting:
    {"psnr", "ssim", "psnr_ci95", "ssim_ci95", ...}} of the trained model."""

    job: Path
    overrides: dict[str, str]
    arm: dict[str, str]
    seed: int
    scores: dict[str, dict]


@dataclass(frozen=True)
class Sweep:
    """entries: every scored arm; experiment: the `experiment=` choice of the jobs (None if none);
    skipped: (job dir, reason) of the jobs without scores."""

    entries: list[Entry]
    experiment: str | None
    skipped: list[tuple[Path, str]]


def read_sweep(sweep_dir: Path) -> Sweep:
    """All jobs under `sweep_dir` (directories holding `.hydra/overrides.yaml`), in job order."""
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: not a directory (give the sweep dir of `run.py -m ...`)")
    jobs = sorted((p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")), key=_job_order)
    if not jobs:
        raise UserError(f"{sweep_dir}: no sweep jobs found (no */.hydra/overrides.yaml)")
    entries, skipped, experiments = [], [], set()
    for job in jobs:
        found, reason = _job_entries(job)
        entries += found
        if reason:
            skipped.append((job, reason))
        if found:
            experiments.add(_choices(job).get("experiment"))
    if not entries:
        raise UserError(f"{sweep_dir}: no finished job with scores; " + "; ".join(f"{j.name}: {r}" for j, r in skipped))
    if len(experiments) > 1:
        names = ", ".join(sorted(map(str, experiments)))
        raise UserError(f"{sweep_dir}: jobs of different experiments ({names}); summarise one sweep at a time")
    return Sweep(entries, experiments.pop(), skipped)


def _job_order(job: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in job.parts)


def _job_entries(job: Path) -> tuple[list[Entry], str | None]:
    """(entries of a finished job, None) or ([], why it has none)."""
    error = read_error(job)
    if error:
        return [], f"failed: {error[1]}"
    path = job / METRICS
    if not path.is_file():
        return [], f"no {METRICS} (unfinished?)"
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(metrics.get("eval"), dict):
        return [], f"{METRICS} has no evaluation ({metrics.get('eval', 'missing')})"
    overrides, seed = _overrides(job), int(_config(job).get("seed", 0))
    overrides["seed"] = str(seed)
    if isinstance(metrics.get("schedules"), dict):
        return [Entry(job, overrides, {**overrides, "schedule": name}, seed, scores)
                for name, scores in metrics["schedules"].items()], None
    return [Entry(job, overrides, overrides, seed, {s: rows["trained"] for s, rows in metrics["eval"].items()})], None


def _overrides(job: Path) -> dict[str, str]:
    """{key: value} of the job's task overrides (`+key=v`, `~key` included as `key`)."""
    items = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _config(job: Path) -> dict:
    path = job / ".hydra" / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _choices(job: Path) -> dict:
    path = job / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    return hydra.get("runtime", {}).get("choices", {}) or {}
