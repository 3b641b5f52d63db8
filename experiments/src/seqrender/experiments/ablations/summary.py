"""A sweep's scores per arm (mean and 95 % interval over seeds) and their direction against the paper.

Arms are the values of the override keys that vary across the sweep's entries (seed excluded). With
n ≥ 2 seeds an arm's interval is Student's t over its seed means (`stats.t_interval`); with one seed
it is that run's own 95 % bootstrap interval over eval items. The verdict compares the paper's chosen
design with each other arm on PSNR, per eval setting, and is paired by seed: arms that share a seed
share its data order and noise, the eval items and (where the parameters match) the initial weights,
so chosen − arm is taken per seed and its Student-t interval over the shared seeds decides: "same
direction" or "opposite" when it excludes 0, "inconclusive (interval includes 0)" otherwise; the
seed-to-seed spread both arms share cancels. With one shared seed: "inconclusive (intervals
overlap)" when the arms' own intervals overlap. "no paper direction" when the paper has no row for
the arm or its datasets disagree.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

import numpy as np

from seqrender.experiments import stats
from seqrender.experiments.ablations.collect import Entry, Sweep, varying_keys
from seqrender.experiments.ablations.paper import PAPER, PaperAblation, paper_direction

METRICS = ("psnr", "ssim")
SEED_INTERVAL = "95 % Student-t interval over seeds"
ITEM_INTERVAL = "95 % bootstrap interval over eval items (one seed)"


@dataclass(frozen=True)
class Score:
    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Arm:
    """label: the arm's swept value(s); seeds: one per entry; scores {setting: {metric: Score}};
    parameters: the model's parameter count (None unless every entry reports the same);
    step_seconds: training wall seconds per step over the seeds (None without train records)."""

    label: str
    seeds: tuple[int, ...]
    scores: dict[str, dict[str, Score]]
    psnr_by_seed: dict[str, dict[int, float]]  # {setting: {seed: PSNR}} for the paired verdict
    parameters: int | None = None
    step_seconds: Score | None = None

    @property
    def interval(self) -> str:
        return SEED_INTERVAL if len(self.seeds) > 1 else ITEM_INTERVAL


@dataclass(frozen=True)
class Verdict:
    """Paper's chosen arm vs `arm` in `setting`: ours = PSNR(chosen) − PSNR(arm) (mean over the shared
    seeds of the per-seed differences, with its 95 % t-interval `ours_ci`; None with < 2 shared seeds,
    then `ours` is the difference of the arms' means)."""

    arm: str
    setting: str
    ours: float
    ours_ci: tuple[float, float] | None
    paper: str
    verdict: str


@dataclass(frozen=True)
class Summary:
    name: str
    keys: tuple[str, ...]
    arms: list[Arm]
    verdicts: list[Verdict]
    paper: PaperAblation | None
    command: str


def summarise_sweep(sweep: Sweep) -> Summary:
    """Group the entries by arm, take intervals over seeds, and compare with the paper's table."""
    keys = varying_keys(sweep.entries)
    groups: dict[str, list[Entry]] = {}
    for entry in sweep.entries:
        groups.setdefault(arm_label(entry, keys), []).append(entry)
    arms = [summarise_arm(label, entries) for label, entries in groups.items()]
    paper = PAPER.get(sweep.experiment or "")
    if paper is None or keys != (paper.key,):
        paper = None
    verdicts = compare(arms, paper) if paper else []
    return Summary(sweep.experiment or "sweep", keys, arms, verdicts, paper, command(sweep.own))


def arm_label(entry: Entry, keys: tuple[str, ...]) -> str:
    if len(keys) == 1:
        return entry.arm.get(keys[0], "(default)")
    return ", ".join(f"{k}={entry.arm.get(k, '(default)')}" for k in keys) or "all"


def summarise_arm(label: str, entries: list[Entry]) -> Arm:
    """Mean and 95 % interval per (setting, metric) over the arm's entries (seeds)."""
    settings = list(dict.fromkeys(s for e in entries for s in e.scores))
    scores = {s: {m: seed_score([e.scores.get(s, {}) for e in entries], m) for m in METRICS} for s in settings}
    kept = {s: {m: v for m, v in row.items() if v is not None} for s, row in scores.items()}
    by_seed = {s: {e.seed: float(e.scores[s]["psnr"]) for e in entries
                   if e.scores.get(s, {}).get("psnr") is not None} for s in settings}
    counts = {e.train.get("parameters") for e in entries}
    parameters = counts.pop() if len(counts) == 1 else None
    return Arm(label, tuple(e.seed for e in entries), kept, by_seed, parameters, step_seconds(entries))


def step_seconds(entries: list[Entry]) -> Score | None:
    """Training wall seconds ÷ steps over the entries, as `seed_score` takes any metric."""
    rows = [{"s": e.train["seconds"] / e.train["steps"]} for e in entries
            if e.train.get("seconds") is not None and e.train.get("steps")]
    return seed_score(rows, "s")


def seed_score(rows: list[dict], metric: str) -> Score | None:
    """Student-t over the rows' means (≥ 2 finite), else the single row's own interval."""
    usable = [r for r in rows if r.get(metric) is not None]
    if len(usable) >= 2:
        return Score(*stats.t_interval(np.array([r[metric] for r in usable], dtype=np.float64)))
    if len(usable) == 1:
        row = usable[0]
        lo, hi = row.get(f"{metric}_ci95") or (row[metric], row[metric])
        return Score(float(row[metric]), float(lo), float(hi))
    return None


def compare(arms: list[Arm], paper: PaperAblation) -> list[Verdict]:
    """The paper's chosen arm against every other arm, per eval setting, on PSNR."""
    by_label = {a.label: a for a in arms}
    chosen = by_label.get(paper.chosen)
    if chosen is None:
        return []
    out = []
    for arm in arms:
        if arm is chosen:
            continue
        for setting, row in chosen.scores.items():
            ours, theirs = row.get("psnr"), arm.scores.get(setting, {}).get("psnr")
            if ours is None or theirs is None:
                continue
            sign, text = paper_direction(paper, arm.label, setting)
            paired = paired_difference(chosen.psnr_by_seed.get(setting, {}), arm.psnr_by_seed.get(setting, {}))
            if paired is None:
                out.append(Verdict(arm.label, setting, ours.mean - theirs.mean, None, text,
                                   verdict(ours, theirs, sign)))
            else:
                out.append(Verdict(arm.label, setting, paired.mean, (paired.lo, paired.hi), text,
                                   paired_verdict(paired, sign)))
    return out


def paired_difference(chosen: dict[int, float], other: dict[int, float]) -> Score | None:
    """Student-t interval over the seeds both arms ran of PSNR(chosen) − PSNR(other); None if < 2."""
    seeds = sorted(set(chosen) & set(other))
    if len(seeds) < 2:
        return None
    return Score(*stats.t_interval(np.array([chosen[s] - other[s] for s in seeds], dtype=np.float64)))


def paired_verdict(difference: Score, paper_sign: int | None) -> str:
    if paper_sign is None:
        return "no paper direction"
    if difference.lo <= 0.0 <= difference.hi:
        return "inconclusive (interval includes 0)"
    ours = 1 if difference.mean > 0 else -1
    return "same direction" if ours == paper_sign else "opposite"


def verdict(chosen: Score, other: Score, paper_sign: int | None) -> str:
    """One seed: the arms' own intervals (over eval items) must not overlap."""
    if paper_sign is None:
        return "no paper direction"
    if chosen.lo <= other.hi and other.lo <= chosen.hi:
        return "inconclusive (intervals overlap)"
    ours = 1 if chosen.mean > other.mean else -1
    return "same direction" if ours == paper_sign else "opposite"


def command(entries: list[Entry]) -> str:
    """The multirun command line that makes these jobs: shared overrides, then every varying one as
    a comma-separated sweep (values in first-seen order)."""
    jobs = list({e.job: e.overrides for e in entries}.values())
    keys = list(dict.fromkeys(k for o in jobs for k in o))
    parts = []
    for key in keys:
        values = list(dict.fromkeys(o.get(key) for o in jobs if key in o))
        parts.append(f"{key}={','.join(values)}")
    experiment = [p for p in parts if p.startswith("experiment=")]
    rest = [p for p in parts if not p.startswith("experiment=")]
    return " ".join(["python experiments/run.py -m", *map(shlex.quote, experiment + rest)])
