"""FSDP2 (`trainer.sharding=fsdp`) on two CPU processes (gloo) through the cluster path
(`hydra/launcher=submitit_local`, as tests/test_ddp_equivalence.py): the weights, the EMA and the
optimiser state equal a single unsharded process with the same global batch, and the full-state-dict
checkpoint written by the two processes resumes in one process and ends where the single run ends."""
import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402

COMMON = [*TINY, "trainer.batch_size=4", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=3",
          "trainer.ema_decay=0.5", "trainer.min_lr_ratio=1", "eval.num_items=1", "eval.orbit=false"]
# min_lr_ratio=1: a constant lr after warm-up, so the 2-step sharded run and its 3-step resumption follow
# the single 3-step run's schedule
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _checkpoint(run_dir: Path, step: int) -> tuple[dict, dict, dict]:
    """(model weights, EMA weights, state.pt) of checkpoint `step`."""
    ckpt = run_dir / "checkpoints" / f"step_{step:08d}"
    return (load_file(ckpt / "model.safetensors"), load_file(ckpt / "ema.safetensors"),
            torch.load(ckpt / "state.pt", weights_only=False))


def _assert_same(a: tuple[dict, dict, dict], b: tuple[dict, dict, dict]) -> None:
    for weights_a, weights_b in zip(a[:2], b[:2]):
        assert weights_a.keys() == weights_b.keys()
        for name, value in weights_a.items():
            torch.testing.assert_close(weights_b[name], value, **TOL, msg=name)
    torch.testing.assert_close(torch.tensor(a[2]["losses"]), torch.tensor(b[2]["losses"]), rtol=1e-5, atol=1e-6)
    opt_a, opt_b = a[2]["optimizer"]["state"], b[2]["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for i in opt_a:
        for key in ("exp_avg", "exp_avg_sq"):  # full (gathered) shapes, equal values
            torch.testing.assert_close(opt_b[i][key], opt_a[i][key], **TOL, msg=f"{i}.{key}")


def test_fsdp_two_processes_equal_one_and_resume_in_one(tmp_path):
    run_env = env(tmp_path / "data")
    single = subprocess.Popen(command(*COMMON, "trainer.steps=3", f"hydra.run.dir={tmp_path / 'single'}"), cwd=REPO,
                              env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    fsdp = subprocess.run(command("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *COMMON,
                                  "trainer.steps=2", "trainer.sharding=fsdp", f"hydra.sweep.dir={tmp_path / 'fsdp'}"),
                          cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    assert single.wait(timeout=300) == 0, single.stderr.read()[-3000:]
    run_dir = tmp_path / "fsdp" / "0"
    sharded = re.search(r"FSDP2: (\d+) parameters sharded over 2 processes \((\d+) on this one\)",
                        (run_dir / "run.log").read_text())
    assert sharded, "no FSDP2 line in run.log"
    reference = _checkpoint(tmp_path / "single", 2)
    total, local = map(int, sharded.groups())
    assert total == sum(v.numel() for v in reference[0].values())
    assert total / 2 <= local < 0.6 * total  # rank 0 holds about half (dim-0 chunks round up)
    _assert_same(reference, _checkpoint(run_dir, 2))

    resumed = subprocess.run(command(*COMMON, "trainer.steps=3", "trainer.sharding=fsdp", f"hydra.run.dir={run_dir}"),
                             cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "step_00000002" in resumed.stdout
    _assert_same(_checkpoint(tmp_path / "single", 3), _checkpoint(run_dir, 3))
