"""A SLURM training job interrupted twice — by submitit's pre-timeout signal (SIGUSR2) and by
`scontrol requeue` (SIGTERM) — checkpoints, is requeued, resumes in the same run directory and ends
at the same final step with the loss history and weights of an uninterrupted run."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env  # noqa: E402
from _slurm import final_states, local_slurm  # noqa: E402,F401

STEPS = 80
COMMON = [*TINY, f"trainer.steps={STEPS}", "trainer.checkpoint_every=2", "eval.num_items=1"]


def _latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    return run_dir / "checkpoints" / pointer.read_text().strip() if pointer.is_file() else None


def _step(run_dir: Path) -> int:
    """Step of the newest checkpoint (its directory is `step_<8 digits>`), 0 if none."""
    latest = _latest(run_dir)
    return int(latest.name.removeprefix("step_")) if latest else 0


def _wait_for(condition, launcher: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or launcher.poll() is not None:
            pytest.fail(f"timed out waiting for {what} (launcher exit {launcher.poll()})")
        time.sleep(0.05)


def _training_in_run(log_file: Path, run_dir: Path, number: int) -> bool:
    """The job's `number`-th run (1-based) has started and written a checkpoint of its own."""
    log = log_file.read_text() if log_file.is_file() else ""
    if log.count("Starting with JobEnvironment") < number:
        return False
    resumed = re.findall(r"resuming from .* \(step (\d+)\)", log)
    return len(resumed) >= number - 1 and _step(run_dir) > (int(resumed[-1]) if number > 1 else 0)


def _slurm(*args: str, slurm_env: dict[str, str]) -> None:
    subprocess.run(list(args), env=slurm_env, check=True, capture_output=True, timeout=60)


@pytest.mark.slurm
def test_interrupted_job_resumes_to_the_uninterrupted_result(local_slurm, tmp_path):
    run_env = {**env(tmp_path / "data"), **local_slurm}
    straight = tmp_path / "straight"
    reference = subprocess.Popen(command(*COMMON, f"hydra.run.dir={straight}"), cwd=REPO, env=run_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        command("-m", "hydra/launcher=submitit_slurm", *COMMON, "hydra.launcher.cpus_per_task=1",
                f"hydra.sweep.dir={sweep}"),
        cwd=REPO, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = sweep / "0"
        _wait_for(lambda: any((sweep / ".submitit").glob("*/*_0_log.out")), launcher, "the job to start")
        log_file = next((sweep / ".submitit").glob("*/*_0_log.out"))   # <job id>/<job id>_<task>_log.out
        job_id = log_file.parent.name
        _wait_for(lambda: _training_in_run(log_file, run_dir, 1), launcher, "training")
        _slurm("scancel", "--signal=USR2", job_id, slurm_env=run_env)       # submitit's pre-timeout signal
        _wait_for(lambda: _training_in_run(log_file, run_dir, 2), launcher, "training after the first requeue")
        _slurm("scontrol", "requeue", job_id, slurm_env=run_env)            # preemption-style requeue
        assert launcher.wait(timeout=240) == 0, launcher.stderr.read()[-3000:]
        assert reference.wait(timeout=240) == 0, reference.stderr.read()[-3000:]
    finally:
        for proc in (launcher, reference):
            proc.kill()

    assert final_states([job_id], run_env) == {job_id: "COMPLETED"}
    log = log_file.read_text()
    assert "Requeued job" in log and log.count("Starting with JobEnvironment") == 3, log[-3000:]
    first, second = map(int, re.findall(r"resuming from .* \(step (\d+)\)", log))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == STEPS and metrics["train"]["status"] == "finished"
    resumed, uninterrupted = (torch.load(_latest(d) / "state.pt", weights_only=False) for d in (run_dir, straight))
    assert 0 < first < second < STEPS
    assert resumed["step"] == uninterrupted["step"] == STEPS
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(uninterrupted["losses"]), rtol=0, atol=0)
    weights = [load_file(_latest(d) / "ema.safetensors") for d in (run_dir, straight)]
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[0][name], value, rtol=0, atol=0, msg=name)
