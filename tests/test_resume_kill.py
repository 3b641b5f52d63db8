"""SIGKILL mid-training, rerun the same command in the same run dir: it resumes from the last
checkpoint, reaches the same final step, and its loss history equals an uninterrupted run's."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env, run  # noqa: E402

STEPS = 40


def _state(run_dir: Path) -> dict:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    return torch.load(run_dir / "checkpoints" / latest / "state.pt", weights_only=False)


def _kill_after_first_checkpoint(overrides: list[str], data_root: Path, run_dir: Path) -> None:
    proc = subprocess.Popen(command(*overrides), cwd=REPO, env=env(data_root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = run_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + 600
    while not pointer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_run_resumes_to_the_same_final_step(tmp_path):
    data_root = tmp_path / "data"
    common = [*TINY, f"trainer.steps={STEPS}", "trainer.checkpoint_every=3", "eval.num_items=1"]
    reference = run(*common, f"hydra.run.dir={tmp_path / 'straight'}", data_root=data_root)
    assert reference.returncode == 0, reference.stderr[-3000:]

    run_dir = tmp_path / "killed"
    overrides = [*common, f"hydra.run.dir={run_dir}"]
    _kill_after_first_checkpoint(overrides, data_root, run_dir)
    killed_at = _state(run_dir)["step"]
    assert 0 < killed_at < STEPS, f"the run was not killed mid-training (step {killed_at})"

    resumed = run(*overrides, data_root=data_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {killed_at})" in resumed.stdout
    final, straight = _state(run_dir), _state(tmp_path / "straight")
    assert final["step"] == straight["step"] == STEPS
    assert len(final["losses"]) == STEPS
    torch.testing.assert_close(torch.tensor(final["losses"]), torch.tensor(straight["losses"]), rtol=0, atol=0)
