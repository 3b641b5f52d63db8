"""Read a sweep directory (`run.py -m ...`): every job's overrides, seed and trained-model scores.

A job is `<sweep dir>/<n>/` with Hydra's `.hydra/{overrides,config,hydra}.yaml` and our
`metrics.json`. Each finished job gives one `Entry` per arm it scored: normally one, the "trained" row
of every eval setting; with `eval.schedules` one per schedule (the `"schedules"` section), the
schedule being the arm. Failed or unfinished jobs are listed as skipped, with their reason.

Shared baselines (`borrow_baselines`): the paper's choice is often the same configuration in several
sweeps (gta / exponential / mode / linear-quadratic / window 8 in every Kaleido table), so a sweep may
leave its baseline arm out and take it from another sweep's jobs. A borrowed job must have the
sweep's resolved config except for the swept keys (and seed); its arm is its value of those keys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seqrender.experiments.failures import UserError, read_error
from seqrender.experiments.resume import flatten

METRICS = "metrics.json"


@dataclass(frozen=True)
class Entry:
    """One scored arm of one job: overrides {key: value} of the job's command line (seed included);
    arm: the overrides, plus "schedule" for an `eval.schedules` entry; scores {eval setting:
    {"psnr", "ssim", "psnr_ci95", "ssim_ci95", ...}} of the trained model; train: the job's
    `metrics.json` "train" section (steps, seconds, parameters, ...; empty if absent)."""

    job: Path
    overrides: dict[str, str]
    arm: dict[str, str]
    seed: int
    scores: dict[str, dict]
    borrowed: bool = False  # taken from another sweep as a shared baseline (`borrow_baselines`)
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """entries: every scored arm; experiment: the `experiment=` choice of the jobs (None if none);
    skipped: (job dir, reason) of the jobs without scores."""

    entries: list[Entry]
    experiment: str | None
    skipped: list[tuple[Path, str]]
    baseline_dirs: tuple[Path, ...] = ()  # where borrowed entries came from
    not_borrowed: tuple[tuple[Path, str], ...] = ()  # (job, why) of the baseline dirs' jobs that did not fit

    @property
    def own(self) -> list[Entry]:
        """The entries of the sweep's own jobs (not borrowed)."""
        return [e for e in self.entries if not e.borrowed]


def read_sweep(sweep_dir: Path) -> Sweep:
    """All jobs under `sweep_dir` (directories holding `.hydra/overrides.yaml`), in job order."""
    jobs = _jobs(sweep_dir)
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


_MISSING = object()


def borrow_baselines(sweep: Sweep, dirs: list[Path]) -> Sweep:
    """`sweep` plus the finished jobs under `dirs` (other sweeps or run dirs) whose resolved config equals
    the sweep's but for its swept keys and seed, each an arm labelled by its values of those keys. Jobs
    that differ elsewhere, are unfinished, or repeat an (arm, seed) the sweep has go to `not_borrowed`."""
    reference = _job_config(sweep.own[0].job)
    keys = swept_keys(sweep)
    have = {(tuple(sorted(e.arm.items())), e.seed) for e in sweep.entries}
    entries, rejected = list(sweep.entries), list(sweep.not_borrowed)
    for folder in dirs:
        jobs = _jobs(folder)
        found, before = [], len(rejected)
        for job in jobs:
            entry, reason = _borrowed_entry(job, keys, reference, sweep.own[0].overrides)
            if entry and (tuple(sorted(entry.arm.items())), entry.seed) in have:
                arm = ", ".join(f"{k}={entry.arm[k]}" for k in keys)
                entry, reason = None, f"this sweep already has {arm} with seed {entry.seed}"
            if entry:
                found.append(entry)
                have.add((tuple(sorted(entry.arm.items())), entry.seed))
            else:
                rejected.append((job, reason))
        if not found:
            raise UserError(f"{folder}: no finished job fits as a baseline of this sweep (its config must "
                            f"equal the sweep's but for {', '.join(keys) or 'nothing'} and seed)"
                            + (f"; {rejected[before][0].name}: {rejected[before][1]}" if len(rejected) > before else "")
                            + (f" (and {len(rejected) - before - 1} more jobs)" if len(rejected) > before + 1 else ""))
        entries += found
    return Sweep(entries, sweep.experiment, sweep.skipped, sweep.baseline_dirs + tuple(dirs), tuple(rejected))


def swept_keys(sweep: Sweep) -> tuple[str, ...]:
    """The sweep's arm keys: its `hydra.sweeper.params` and any override that varies across its own
    jobs, seed excluded, in first-seen order."""
    params = [k for e in sweep.own for k in (_hydra(e.job).get("sweeper", {}) or {}).get("params", {}) or {}]
    return tuple(k for k in dict.fromkeys(params + list(varying_keys(sweep.own))) if k != "seed")


def varying_keys(entries: list[Entry]) -> tuple[str, ...]:
    """Arm keys whose value is not the same in every entry, seed excluded, in first-seen order."""
    keys = list(dict.fromkeys(k for e in entries for k in e.arm))
    return tuple(k for k in keys if k != "seed" and len({e.arm.get(k) for e in entries}) > 1)


def _borrowed_entry(job: Path, keys: tuple[str, ...], reference: dict, like: dict[str, str]):
    """(Entry, None) for a borrowable job, else (None, why not)."""
    found, reason = _job_entries(job)
    if reason or len(found) != 1:
        return None, reason or "it scored several arms (eval.schedules)"
    config = _job_config(job)
    covered = lambda k: k == "seed" or any(k == s or k.startswith(s + ".") for s in keys)  # noqa: E731
    differ = [k for k in sorted(set(config) | set(reference))
              if config.get(k, _MISSING) != reference.get(k, _MISSING) and not covered(k)]
    if differ:
        k = differ[0]
        return None, (f"its config differs in {k} ({config.get(k, 'unset')} vs the sweep's "
                      f"{reference.get(k, 'unset')})" + (f" and {len(differ) - 1} more" if len(differ) > 1 else ""))
    choices = _choices(job)
    arm = dict(like)   # a run of this sweep with the borrowed job's swept values (its config says so)
    for key in keys:
        value = choices[key] if key in choices else config.get(key, _MISSING)
        if value is _MISSING:
            return None, f"it has no value for the swept key {key}"
        text = like.get(key)   # the sweep's own spelling when it means the same value
        arm[key] = text if text is not None and yaml.safe_load(text) == value else _spelled(value)
    entry = found[0]
    arm["seed"] = str(entry.seed)
    return Entry(job, entry.overrides, arm, entry.seed, entry.scores, borrowed=True, train=entry.train), None


def _spelled(value) -> str:
    """A config value as it would be written on the command line."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _job_config(job: Path) -> dict:
    """The job's resolved `.hydra/config.yaml` under dotted keys."""
    return flatten(_config(job))


def _jobs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: not a directory (give a sweep dir or a run dir)")
    jobs = sorted((p.parent.parent for p in folder.glob("**/.hydra/overrides.yaml")), key=_job_order)
    if not jobs:
        raise UserError(f"{folder}: no jobs found (no */.hydra/overrides.yaml)")
    return jobs


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
    train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
    if isinstance(metrics.get("schedules"), dict):
        return [Entry(job, overrides, {**overrides, "schedule": name}, seed, scores, train=train)
                for name, scores in metrics["schedules"].items()], None
    return [Entry(job, overrides, overrides, seed, {s: rows["trained"] for s, rows in metrics["eval"].items()},
                  train=train)], None


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


def _hydra(job: Path) -> dict:
    path = job / ".hydra" / "hydra.yaml"
    return ((yaml.safe_load(path.read_text()) or {}).get("hydra", {}) or {}) if path.is_file() else {}


def _choices(job: Path) -> dict:
    return _hydra(job).get("runtime", {}).get("choices", {}) or {}
