"""`run.py -m hydra/launcher=submitit_slurm posenc=rope,gta` on a real slurmctld: one job per choice,
both finish and write metrics; launcher keys are overridable (the "SlurmQueueConf is not a subclass
of SlurmQueueConf" trap of hydra-submitit-launcher 1.2.0 + hydra-core 1.3)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402
from _slurm import final_states, local_slurm  # noqa: E402,F401

from seqrender.experiments.cli import before_compose  # noqa: E402


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm"])
def test_launcher_keys_compose(launcher):
    """Hydra composes the launcher with its keys overridden (no SLURM needed)."""
    before_compose([])
    keys = {"partition": "gpu", "gpus_per_node": 8, "tasks_per_node": 8, "nodes": 2, "timeout_min": 720,
            "account": "vision", "mem_gb": 480, "signal_delay_s": 300, "max_num_timeout": 7}
    with initialize_config_dir(config_dir=str(REPO / "experiments" / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[f"hydra/launcher={launcher}", *(f"hydra.launcher.{k}={v}" for k, v in keys.items())])
    assert {k: cfg.hydra.launcher[k] for k in keys} == keys
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


@pytest.mark.slurm
def test_sweep_submits_one_finished_job_per_choice(local_slurm, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        command("-m", "hydra/launcher=submitit_slurm", "model=kaleido", "posenc=rope,gta", *TINY, "trainer.steps=4",
                "trainer.checkpoint_every=2", "eval.num_items=1", "hydra.launcher.partition=debug",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"),
        cwd=REPO, env={**env(tmp_path / "data"), **local_slurm}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    job_ids = sorted(p.name for p in (sweep / ".submitit").glob("*_*") if p.is_dir())  # array tasks
    assert len(job_ids) == 2, job_ids
    assert set(final_states(job_ids, {**env(tmp_path / "data"), **local_slurm}).values()) == {"COMPLETED"}
    for num, posenc in enumerate(["rope", "gta"]):
        job_dir = sweep / str(num)
        assert yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())["posenc"]["name"] == posenc
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["train"]["steps"] == 4 and metrics["train"]["status"] == "finished"
        assert set(metrics["eval"]) == {"1->3", "3->1"}
