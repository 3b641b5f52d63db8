"""Two-process DDP (gloo, CPU) through the cluster path — `hydra/launcher=submitit_local` with
`tasks_per_node=2`, each task exporting its torch.distributed environment
(`seqrender.experiments.cluster.export_distributed_env`) before accelerate starts — gives the loss
history and updated weights of a single-process run with the same global batch."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402

STEPS = 3
COMMON = [*TINY, f"trainer.steps={STEPS}", "trainer.batch_size=4", "trainer.checkpoint_every=3", "eval.num_items=4"]  # 2 eval batches: one per rank


def _final(run_dir: Path) -> tuple[dict, dict, dict]:
    """(metrics.json, state.pt, model weights) of a finished run."""
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    return (json.loads((run_dir / "metrics.json").read_text()), torch.load(ckpt / "state.pt", weights_only=False),
            load_file(ckpt / "model.safetensors"))


def test_two_process_ddp_equals_one_process(tmp_path):
    """Both ways of starting two ranks: submitit tasks, and `trainer.local_processes=2` (run.py
    re-executes itself as two ranks)."""
    run_env = env(tmp_path / "data")
    single = subprocess.Popen(command(*COMMON, f"hydra.run.dir={tmp_path / 'single'}"), cwd=REPO, env=run_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ddp = subprocess.run(command("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *COMMON,
                                 f"hydra.sweep.dir={tmp_path / 'ddp'}"),
                         cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    local = subprocess.run(command(*COMMON, "trainer.local_processes=2", f"hydra.run.dir={tmp_path / 'local'}"),
                           cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    assert (tmp_path / "local" / "rank1.log").is_file() and "held-out evaluation" in local.stdout
    assert single.wait(timeout=300) == 0, single.stderr.read()[-3000:]

    for run_dir in (tmp_path / "ddp" / "0", tmp_path / "local"):
        _assert_same_as_single(_final(run_dir), _final(tmp_path / "single"))


def test_two_process_muon_equals_one_process(tmp_path):
    """`trainer.optimizer=muon` on two ranks, which share the Newton–Schulz work (`MuonAdamW`'s
    process group), trains like one process doing all of it."""
    run_env, muon = env(tmp_path / "data"), [*COMMON, "trainer.optimizer=muon"]
    single = subprocess.Popen(command(*muon, f"hydra.run.dir={tmp_path / 'single'}"), cwd=REPO, env=run_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    local = subprocess.run(command(*muon, "trainer.local_processes=2", f"hydra.run.dir={tmp_path / 'local'}"),
                           cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    assert single.wait(timeout=300) == 0, single.stderr.read()[-3000:]
    _assert_same_as_single(_final(tmp_path / "local"), _final(tmp_path / "single"))


def test_local_processes_failure_is_one_line(tmp_path):
    """A rank that fails after launch (here: an unreadable dataset folder) ends the launch with its
    one-line error and status, and no rank is left running."""
    no_data = [o for o in COMMON if not o.startswith("dataset.")]
    result = subprocess.run(command(*no_data, "trainer.local_processes=2", "dataset=blender",
                                    f"dataset.root={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'run'}"),
                            cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "missing" in lines[0] and "Traceback" not in result.stderr


def _assert_same_as_single(ddp_run, single_run):
    (m_ddp, s_ddp, w_ddp), (m_one, s_one, w_one) = ddp_run, single_run
    assert (m_ddp["train"]["processes"], m_one["train"]["processes"]) == (2, 1)
    assert s_ddp["step"] == s_one["step"] == STEPS
    torch.testing.assert_close(torch.tensor(s_ddp["losses"]), torch.tensor(s_one["losses"]), rtol=1e-5, atol=1e-6)
    assert w_ddp.keys() == w_one.keys()
    for name, value in w_one.items():
        torch.testing.assert_close(w_ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # evaluation is sharded over the two ranks and gathered: the same rows and scores as one process
    for setting, rows in m_one["eval"].items():
        assert rows.keys() == m_ddp["eval"][setting].keys()
        for method, row in rows.items():
            for metric in ("psnr", "ssim"):
                assert m_ddp["eval"][setting][method][metric] == pytest.approx(row[metric], rel=1e-3, abs=1e-3)
