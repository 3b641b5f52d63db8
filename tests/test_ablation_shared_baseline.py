"""`summarise.py --baseline`: a sweep run without its baseline arm borrows it from another sweep.

The reference is the committed real window sweep (docs/ablations/sweeps/window), which trained its own
window-8 arm: with those jobs removed and the gta jobs of the posenc sweep borrowed instead (the same
configuration, trained again by another sweep), every arm's scores and every paired verdict must come
out exactly as the full sweep's own. Jobs whose config differs outside the swept keys are refused."""
import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from seqrender.experiments.ablations.collect import borrow_baselines, read_sweep
from seqrender.experiments.ablations.summary import summarise_sweep
from seqrender.experiments.failures import UserError

REPO = Path(__file__).resolve().parents[1]
SWEEPS = REPO / "docs" / "ablations" / "sweeps"


def window_without_baseline(tmp_path: Path) -> Path:
    """A copy of the window sweep without its model.window=8 jobs."""
    out = tmp_path / "window"
    for job in (SWEEPS / "window").iterdir():
        overrides = job / ".hydra" / "overrides.yaml"
        if job.is_dir() and "model.window=8" not in yaml.safe_load(overrides.read_text()):
            shutil.copytree(job, out / job.name)
    return out


def as_table(summary):
    arms = {a.label: (a.seeds, {s: {m: (v.mean, v.lo, v.hi) for m, v in row.items()} for s, row in a.scores.items()})
            for a in summary.arms}
    verdicts = {(v.arm, v.setting): (v.ours, v.ours_ci, v.verdict) for v in summary.verdicts}
    return arms, verdicts


def test_borrowed_baseline_reproduces_the_sweeps_own(tmp_path):
    full = summarise_sweep(read_sweep(SWEEPS / "window"))
    partial = read_sweep(window_without_baseline(tmp_path))
    assert "8" not in [a.label for a in summarise_sweep(partial).arms]
    merged = borrow_baselines(partial, [SWEEPS / "posenc"])
    borrowed = [e for e in merged.entries if e.borrowed]
    assert sorted(e.seed for e in borrowed) == [0, 1, 2]
    assert {e.job.parent.name for e in borrowed} == {"posenc"}
    # cape / plucker / rope differ in posenc.*, which this sweep does not sweep
    assert len(merged.not_borrowed) == 9 and all("posenc.name" in r for _, r in merged.not_borrowed)
    summary = summarise_sweep(merged)
    assert as_table(summary) == as_table(full)
    assert summary.command == ("python experiments/run.py -m experiment=ablate_window model.window=1,2,4 "
                               "seed=0,1,2")


def test_refuses_jobs_that_differ_outside_the_swept_keys(tmp_path):
    partial = read_sweep(window_without_baseline(tmp_path))
    other = tmp_path / "other"
    shutil.copytree(SWEEPS / "posenc" / "0", other / "0")                    # gta, seed 0
    config = other / "0" / ".hydra" / "config.yaml"
    tree = yaml.safe_load(config.read_text())
    tree["trainer"]["steps"] += 1
    config.write_text(yaml.safe_dump(tree))
    with pytest.raises(UserError, match=r"trainer\.steps \(801 vs the sweep's 800\)"):
        borrow_baselines(partial, [other])
    # an (arm, seed) the sweep already has is not borrowed twice
    shutil.copytree(SWEEPS / "window" / "0", other / "1")                    # window 1, seed 0
    tree["trainer"]["steps"] -= 1
    config.write_text(yaml.safe_dump(tree))
    merged = borrow_baselines(partial, [other])
    assert [e.job.name for e in merged.entries if e.borrowed] == ["0"]
    assert [(j.name, "already has" in r) for j, r in merged.not_borrowed] == [("1", True)]


def test_cli_writes_the_page_and_fails_in_one_line(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("summarise_cli", REPO / "experiments" / "summarise.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    sweep = window_without_baseline(tmp_path)
    cli.main([str(sweep), "--baseline", str(SWEEPS / "posenc"), "--out", str(tmp_path / "out")])
    page = (tmp_path / "out" / "ablate_window.md").read_text()
    assert "Shared baseline: 3 jobs borrowed from" in page and "| 8 (paper's choice) | 0,1,2 |" in page
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(sweep), "--baseline", str(SWEEPS / "fourreal")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exit_info.value.code == 2 and len(err) == 1 and "no finished job fits" in err[0], err
