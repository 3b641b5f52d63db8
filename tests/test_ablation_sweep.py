"""The ablation sweeps (experiments/configs/experiment/ablate_*.yaml): every arm composes into a valid
run config; the quick CI form of one sweep runs for real through `run.py -m` and `summarise.py`; and
`eval.schedules` scores a trained run exactly as a run sampled with that schedule does."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402
from test_e2e_fourreal import TINY_4D  # noqa: E402

from seqrender.experiments.cli import CONFIG_DIR, before_compose  # noqa: E402
from seqrender.experiments.config import ConfigError, validate_config  # noqa: E402

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("ablate_*.yaml"))
QUICK = [*TINY, "trainer.steps=3", "seed=0"]


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def validated(cfg):
    raw = OmegaConf.to_container(cfg, resolve=False)
    raw.pop("hydra")
    return validate_config(OmegaConf.to_container(OmegaConf.create(raw), resolve=True))


def test_there_is_one_experiment_per_ablation():
    assert EXPERIMENTS == ["ablate_fourreal", "ablate_posenc", "ablate_sampler", "ablate_schedule",
                           "ablate_views", "ablate_window"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_arm_composes_into_a_valid_run(experiment):
    before_compose([])
    params = composed([f"experiment={experiment}"]).hydra.sweeper.params
    assert params["seed"] == "0,1,2"
    arms = [(k, v) for k, values in params.items() if k != "seed" for v in str(values).split(",")]
    assert len(arms) >= (0 if experiment == "ablate_schedule" else 2)
    for key, value in arms or [(None, None)]:
        cfg = validated(composed([f"experiment={experiment}", *([f"{key}={value}"] if key else [])]))
        assert cfg.threads == 1 and not cfg.trainer.progress
        if key:
            assert str(OmegaConf.select(OmegaConf.create(_plain(cfg)), key if "." in key else f"{key}.name")) == value
    if experiment == "ablate_schedule":
        assert cfg.eval.schedules == ("linear_quadratic", "linspace", "trailing")


def _plain(cfg) -> dict:
    """RunConfig -> nested dict with components as {"name", **fields}."""
    out = {"trainer": cfg.trainer.model_dump()}
    for kind in ("model", "posenc", "sampler", "schedule"):
        component = getattr(cfg, kind)
        out[kind] = {"name": component.name, **vars(component.config)}
    return out


@pytest.mark.parametrize("overrides, message", [
    (["trainer.views=4", "trainer.view_sampling=fixed", "trainer.fixed_references=4"],
     "trainer: .*fixed_references=4 must be below views=4"),
    (["trainer.view_sampling=sometimes"], "trainer.view_sampling: Input should be 'exponential' or 'fixed'"),
    (["eval.schedules=[linspace,nope]"], "eval.schedules: .*unknown schedule 'nope'; registered: linear_quadratic, "),
])
def test_bad_ablation_fields_name_themselves(overrides, message):
    before_compose([])
    with pytest.raises(ConfigError, match=message):
        validated(composed(overrides))


def test_quick_posenc_sweep_then_summarise(tmp_path):
    """The CI form: 2 arms x 1 seed x 3 steps of a tiny model, then summarise.py on the sweep dir."""
    sweep = tmp_path / "sweep"
    args = ["-m", "experiment=ablate_posenc", "posenc=gta,rope", *QUICK, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(command(*args), cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # seed=0 replaced 0,1,2
    summary = subprocess.run([sys.executable, str(REPO / "experiments" / "summarise.py"), str(sweep),
                              "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    text = (tmp_path / "out" / "ablate_posenc.md").read_text()
    assert "| gta (paper's choice) | 0 |" in text and "| rope | 0 |" in text
    assert "| gta vs rope | 1->3 (1→5) |" in text and "| gta vs rope | 3->1 (5→1) |" in text
    with Image.open(tmp_path / "out" / "ablate_posenc.png") as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_quick_fourreal_sweep_compares_quality_and_speed_of_the_three_attentions(tmp_path):
    """4RV2 Table 2 at tiny size: fused / parallel / sequential view-time attention trained on the same
    grids and budget (1 seed × 3 steps), then one table of quality, parameters and step time."""
    sweep = tmp_path / "sweep"
    args = ["-m", "experiment=ablate_fourreal", "model.attention=fused,parallel,sequential", *TINY_4D,
            "trainer.steps=3", "seed=0", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(command(*args), cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = subprocess.run([sys.executable, str(REPO / "experiments" / "summarise.py"), str(sweep),
                              "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    text = (tmp_path / "out" / "ablate_fourreal.md").read_text()
    arm_row = re.compile(r"^\| (fused|parallel|sequential)(?: \(paper's choice\))? \| 0 \|")
    rows = {m.group(1): line.split(" | ") for line in text.splitlines() if (m := arm_row.match(line))}
    assert set(rows) == {"fused", "parallel", "sequential"}
    parameters = {arm: int(cells[-2].replace(",", "")) for arm, cells in rows.items()}
    assert parameters["fused"] < parameters["sequential"] < parameters["parallel"]   # extra layers per block
    assert all(float(cells[-1].strip(" |")) > 0 for cells in rows.values())            # s/step, one seed
    assert "| fused vs parallel | row+column->grid" in text and "| fused vs sequential |" in text


def test_eval_schedules_equal_runs_sampled_with_each_schedule(tmp_path):
    """Training does not depend on the schedule, so job 0's linspace row (its eval.schedules) must equal
    job 1's main evaluation, which samples with schedule=linspace, and vice versa."""
    sweep = tmp_path / "sweep"
    args = ["-m", "schedule=linear_quadratic,linspace", "eval.schedules=[linear_quadratic,linspace]", *QUICK,
            "eval.orbit=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(command(*args), cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lq, lin = (json.loads((sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    for setting in ("1->3", "3->1"):
        for metric in ("psnr", "ssim"):
            by_schedule = lq["schedules"]["linspace"][setting][metric]
            assert by_schedule == pytest.approx(lin["eval"][setting]["trained"][metric], abs=1e-9)
            by_schedule = lin["schedules"]["linear_quadratic"][setting][metric]
            assert by_schedule == pytest.approx(lq["eval"][setting]["trained"][metric], abs=1e-9)
        assert lq["schedules"]["linspace"][setting]["psnr"] != lq["schedules"]["linear_quadratic"][setting]["psnr"]
