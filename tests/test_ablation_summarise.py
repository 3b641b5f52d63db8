"""experiments/summarise.py on synthetic sweep dirs with known numbers: the seed intervals against a
float64 Student-t interval computed here (t from the published table), the verdicts against the
paper's Table 4 signs worked out by hand, the single-seed and eval-schedules paths, and bad input."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from seqrender.experiments import stats
from seqrender.experiments.ablations.collect import read_sweep
from seqrender.experiments.ablations.summary import summarise_sweep

REPO = Path(__file__).resolve().parents[1]
SUMMARISE = REPO / "experiments" / "summarise.py"
# Two-sided 95 % critical values of Student's t (any statistics table, e.g. NIST/SEMATECH 1.3.6.7.2).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}


def write_job(job: Path, *, overrides: list[str], experiment: str | None, seed: int, scores: dict | None,
              schedules: dict | None = None, train: dict | None = None) -> None:
    """A finished job: Hydra's .hydra files and a metrics.json whose trained rows are `scores`
    ({setting: (psnr, ssim)}), each with a bootstrap interval of ±0.1 / ±0.01."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides + [f"seed={seed}"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
    choices = {"experiment": experiment} if experiment else {}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if scores is None:
        return
    metrics = {"eval": {s: {"trained": row(*v), "untrained": row(4.6, 0.005)} for s, v in scores.items()}}
    if schedules:
        metrics["schedules"] = {name: {s: row(*v) for s, v in rows.items()} for name, rows in schedules.items()}
    if train:
        metrics["train"] = train
    (job / "metrics.json").write_text(json.dumps(metrics))


def row(psnr: float, ssim: float) -> dict:
    return {"psnr": psnr, "ssim": ssim, "psnr_ci95": [psnr - 0.1, psnr + 0.1], "ssim_ci95": [ssim - 0.01, ssim + 0.01]}


def t_interval_by_hand(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=np.float64)
    half = T_TABLE[len(x) - 1] * math.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1)) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


@pytest.mark.parametrize("df, expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_published_table(df, expected):
    assert stats.student_t_quantile(0.95, df) == pytest.approx(expected, abs=6e-4)


@pytest.mark.parametrize("df", [1, 2, 3, 6, 7])
def test_t_cdf_matches_numerical_integration_of_the_density(df):
    """P(|T| <= t) in closed form against a float64 trapezoid integral of the t density."""
    const = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    for t in (0.3, 1.0, 2.5, 7.0):
        x = np.linspace(0.0, t, 200_001)
        density = const * (1 + x ** 2 / df) ** (-(df + 1) / 2)
        integral = 2 * float(((density[1:] + density[:-1]) / 2 * np.diff(x)).sum())
        assert stats.student_t_two_sided(t, df) == pytest.approx(integral, abs=1e-9)


# Sampler ablation, three seeds per arm: PSNR per setting and seed. Paper (Kaleido Table 4 (viii)),
# PSNR(mode) - PSNR(arm): logit_normal 1->5 +2.26 / +0.26 (Objaverse / uCO3D), 5->1 +1.79 / +0.74;
# uniform 1->5 +0.61 / +0.13, 5->1 +2.05 / +1.27: the mode sampler is better in every case.
PSNR = {
    "mode": {"1->3": [15.0, 15.2, 15.4], "3->1": [14.0, 14.1, 14.2]},
    "logit_normal": {"1->3": [13.0, 13.1, 13.5], "3->1": [15.0, 15.2, 15.1]},
    "uniform": {"1->3": [15.1, 15.3, 14.9], "3->1": [12.0, 12.2, 12.1]},
}
EXPECTED = {("logit_normal", "1->3"): "same direction", ("logit_normal", "3->1"): "opposite",
            ("uniform", "1->3"): "inconclusive (interval includes 0)", ("uniform", "3->1"): "same direction"}


def sampler_sweep(root: Path) -> Path:
    job = 0
    for arm, settings in PSNR.items():
        for seed in range(3):
            scores = {s: (v[seed], 0.3 + 0.01 * seed) for s, v in settings.items()}
            write_job(root / str(job), overrides=["experiment=ablate_sampler", f"sampler={arm}"],
                      experiment="ablate_sampler", seed=seed, scores=scores)
            job += 1
    return root


def test_seed_intervals_and_verdicts_against_hand_computation(tmp_path):
    summary = summarise_sweep(read_sweep(sampler_sweep(tmp_path / "sweep")))
    assert summary.keys == ("sampler",) and summary.paper.chosen == "mode"
    assert [a.label for a in summary.arms] == list(PSNR)
    for arm in summary.arms:
        assert arm.seeds == (0, 1, 2)
        for setting, values in PSNR[arm.label].items():
            mean, lo, hi = t_interval_by_hand(values)
            got = arm.scores[setting]["psnr"]
            assert (got.mean, got.lo, got.hi) == pytest.approx((mean, lo, hi), abs=2e-4)
        ssim = arm.scores["1->3"]["ssim"]
        assert (ssim.mean, ssim.lo, ssim.hi) == pytest.approx(t_interval_by_hand([0.30, 0.31, 0.32]), abs=1e-5)
    got = {(v.arm, v.setting): v.verdict for v in summary.verdicts}
    assert got == EXPECTED
    for v in summary.verdicts:  # paired by seed: the t-interval of the per-seed differences
        diffs = np.subtract(PSNR["mode"][v.setting], PSNR[v.arm][v.setting])
        mean, lo, hi = t_interval_by_hand(list(diffs))
        assert (v.ours, *v.ours_ci) == pytest.approx((mean, lo, hi), abs=2e-4)


def test_paired_verdict_sees_a_consistent_difference_that_seed_spread_hides(tmp_path):
    """Each seed moves both arms by the same ±1.5 dB (shared data, init and eval items), and the chosen
    arm is 0.3 ± 0.05 dB better at every seed. The arms' own intervals overlap widely; the paired
    interval of the differences excludes 0, so the verdict is the paper's direction."""
    seed_effect, gap = [13.0, 14.5, 16.0], [0.30, 0.25, 0.35]
    psnr = {"mode": [b + g for b, g in zip(seed_effect, gap)], "uniform": seed_effect}
    for job, (arm, seed) in enumerate((a, s) for a in psnr for s in range(3)):
        write_job(tmp_path / "sweep" / str(job), overrides=["experiment=ablate_sampler", f"sampler={arm}"],
                  experiment="ablate_sampler", seed=seed, scores={"3->1": (psnr[arm][seed], 0.4)})
    summary = summarise_sweep(read_sweep(tmp_path / "sweep"))
    arms = {a.label: a.scores["3->1"]["psnr"] for a in summary.arms}
    assert arms["mode"].lo < arms["uniform"].hi  # the marginal intervals overlap
    (v,) = summary.verdicts
    assert (v.ours, *v.ours_ci) == pytest.approx(t_interval_by_hand(gap), abs=2e-4)
    assert v.ours_ci[0] > 0 and v.verdict == "same direction"


def test_cli_writes_table_and_chart(tmp_path):
    """In-process; tests/test_ablation_sweep.py runs the script as a subprocess on a real sweep."""
    sweep = sampler_sweep(tmp_path / "sweep")
    _cli().main([str(sweep), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "ablate_sampler.md").read_text()
    for arm in PSNR:
        assert f"| {arm}" in text
    for verdict in set(EXPECTED.values()):
        assert verdict in text
    assert "python experiments/run.py -m experiment=ablate_sampler sampler=mode,logit_normal,uniform seed=0,1,2" in text
    with Image.open(tmp_path / "out" / "ablate_sampler.png") as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_single_seed_schedules_use_item_intervals_and_mixed_paper_rows(tmp_path):
    """An eval.schedules job: one arm per schedule; one seed, so the run's own item intervals. The
    paper's linear-quadratic vs linspace differ in sign between Objaverse and uCO3D (no direction);
    vs trailing both favour linear-quadratic."""
    schedules = {"linear_quadratic": {"3->1": (14.0, 0.4)}, "linspace": {"3->1": (13.0, 0.35)},
                 "trailing": {"3->1": (13.95, 0.41)}}
    write_job(tmp_path / "sweep" / "0", overrides=["experiment=ablate_schedule"], experiment="ablate_schedule",
              seed=0, scores={"3->1": (14.0, 0.4)}, schedules=schedules)
    summary = summarise_sweep(read_sweep(tmp_path / "sweep"))
    assert summary.keys == ("schedule",)
    arms = {a.label: a for a in summary.arms}
    assert set(arms) == set(schedules)
    s = arms["linspace"].scores["3->1"]["psnr"]
    assert (s.mean, s.lo, s.hi) == pytest.approx((13.0, 12.9, 13.1))
    assert {v.arm: v.verdict for v in summary.verdicts} == {"linspace": "no paper direction",
                                                           "trailing": "inconclusive (intervals overlap)"}


def _cli():
    spec = importlib.util.spec_from_file_location("summarise_cli", SUMMARISE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_input_is_one_line(tmp_path, capsys):
    """In-process (the CLI's own code path; a subprocess per case would mostly time imports)."""
    cli = _cli()

    def run(folder: Path) -> str:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(folder)])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    assert "not a directory" in run(tmp_path / "missing")
    write_job(tmp_path / "unfinished" / "0", overrides=["posenc=gta"], experiment=None, seed=0, scores=None)
    assert "no finished job" in run(tmp_path / "unfinished")
    write_job(tmp_path / "broken" / "0", overrides=["posenc=gta"], experiment=None, seed=0, scores={"1->3": (10, 0.2)})
    (tmp_path / "broken" / "0" / "metrics.json").write_text("{not json")
    assert "0/metrics.json: not valid JSON" in run(tmp_path / "broken")


def test_failed_job_is_skipped_and_named(tmp_path):
    for n, posenc in enumerate(["gta", "cape"]):
        write_job(tmp_path / "sweep" / str(n), overrides=[f"posenc={posenc}"], experiment="ablate_posenc", seed=0,
                  scores={"1->3": (10.0 + n, 0.2)})
    write_job(tmp_path / "sweep" / "2", overrides=["posenc=rope"], experiment="ablate_posenc", seed=0, scores=None)
    (tmp_path / "sweep" / "2" / "error.txt").write_text("1 error: RuntimeError: boom\n")
    sweep = read_sweep(tmp_path / "sweep")
    assert [(j.name, r) for j, r in sweep.skipped] == [("2", "failed: error: RuntimeError: boom")]
    assert [a.label for a in summarise_sweep(sweep).arms] == ["gta", "cape"]


def test_arm_cost_is_its_parameter_count_and_seconds_per_step_over_seeds(tmp_path):
    """Each job's metrics.json "train" record: parameters (one count per arm) and seconds ÷ steps, with
    the Student-t interval over seeds computed by hand; a job without the record shows n/a."""
    seconds = {"mode": [30.0, 33.0, 36.0], "uniform": [60.0, 66.0, 63.0]}
    for job, (arm, seed) in enumerate((a, s) for a in seconds for s in range(3)):
        write_job(tmp_path / "sweep" / str(job), overrides=["experiment=ablate_sampler", f"sampler={arm}"],
                  experiment="ablate_sampler", seed=seed, scores={"3->1": (14.0 + seed, 0.4)},
                  train={"steps": 300, "seconds": seconds[arm][seed], "parameters": 1000 if arm == "mode" else 2000})
    write_job(tmp_path / "sweep" / "6", overrides=["experiment=ablate_sampler", "sampler=logit_normal"],
              experiment="ablate_sampler", seed=0, scores={"3->1": (13.0, 0.4)})
    arms = {a.label: a for a in summarise_sweep(read_sweep(tmp_path / "sweep")).arms}
    for arm, expected in seconds.items():
        got = arms[arm].step_seconds
        assert (got.mean, got.lo, got.hi) == pytest.approx(t_interval_by_hand([x / 300 for x in expected]), rel=1e-3)
    assert (arms["mode"].parameters, arms["uniform"].parameters) == (1000, 2000)
    assert arms["logit_normal"].parameters is None and arms["logit_normal"].step_seconds is None
    _cli().main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "ablate_sampler.md").read_text()
    assert "| parameters | train s/step |" in text and "| 2,000 | 0.210 [" in text
    assert "| logit_normal | 0 | 13.00 [12.90, 13.10] | 0.400 [0.390, 0.410] | n/a | n/a |" in text
