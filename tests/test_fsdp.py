"""FSDP2 (`trainer.sharding=fsdp`) on two CPU processes (gloo) through the cluster path
(`hydra/launcher=submitit_local`, as tests/test_ddp_equivalence.py): the weights, the EMA and the
optimiser state equal a single unsharded process with the same global batch; the full-state-dict
checkpoint written by the two processes resumes in one process, one written by one process resumes
sharded over two, and both end where the uninterrupted single run ends."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402

COMMON = [*TINY, "trainer.batch_size=4", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=3",
          "trainer.ema_decay=0.5", "trainer.min_lr_ratio=1", "eval.num_items=1", "eval.orbit=false",
          "trainer.optimizer=adamw"]  # the main job's Muon needs whole matrices: refused with FSDP (test_train_scale)
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


def _fsdp(*overrides: str, sweep_dir: Path, run_env: dict) -> subprocess.Popen:
    return subprocess.Popen(command("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *COMMON,
                                    "trainer.sharding=fsdp", *overrides, f"hydra.sweep.dir={sweep_dir}"),
                            cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out


def test_fsdp_two_processes_equal_one_and_resume_across_world_sizes(tmp_path):
    run_env = env(tmp_path / "data")
    single_dir, sharded_dir = tmp_path / "single", tmp_path / "fsdp" / "0"
    single = subprocess.Popen(command(*COMMON, "trainer.steps=3", f"hydra.run.dir={single_dir}"), cwd=REPO,
                              env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _finish(_fsdp("trainer.steps=2", sweep_dir=tmp_path / "fsdp", run_env=run_env))
    _finish(single)
    sharded = re.search(r"FSDP2: (\d+) parameters sharded over 2 processes \((\d+) on this one\)",
                        (sharded_dir / "run.log").read_text())
    assert sharded, "no FSDP2 line in run.log"
    reference = _checkpoint(single_dir, 2)
    total, local = map(int, sharded.groups())
    assert total == sum(v.numel() for v in reference[0].values())
    assert total / 2 <= local < 0.6 * total  # rank 0 holds about half (dim-0 chunks round up)
    _assert_same(reference, _checkpoint(sharded_dir, 2))

    # world size 2 -> 1: the sharded run's checkpoint, resumed by one process (nothing to shard);
    # world size 1 -> 2: the single run's step-2 checkpoint, resumed sharded over two processes
    into_sharded = tmp_path / "resharded" / "0"
    shutil.copytree(single_dir / "checkpoints" / "step_00000002", into_sharded / "checkpoints" / "step_00000002")
    one = subprocess.Popen(command(*COMMON, "trainer.steps=3", "trainer.sharding=fsdp", f"hydra.run.dir={sharded_dir}"),
                           cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _finish(_fsdp("trainer.steps=3", sweep_dir=tmp_path / "resharded", run_env=run_env))
    assert "resuming from" in _finish(one)
    log = (into_sharded / "run.log").read_text()
    assert "resuming from" in log and "FSDP2:" in log
    final = _checkpoint(single_dir, 3)
    _assert_same(final, _checkpoint(sharded_dir, 3))
    _assert_same(final, _checkpoint(into_sharded, 3))
