"""`seqrender.experiments.cluster` without a cluster: the torch.distributed variables exported from
SLURM / submitit task variables, and the signal hand-over of `preemptible()`: deferred to the
checkpoint inside `training()`, at once elsewhere."""
import os
import signal
import subprocess
import sys

import pytest

from seqrender.experiments import cluster


@pytest.fixture
def clean_env(monkeypatch):
    """No distributed or scheduler variables; whatever a test exports is removed afterwards."""
    for key in [*cluster.DISTRIBUTED_VARS, "SUBMITIT_EXECUTOR", "_TEST_CLUSTER_"]:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    return monkeypatch


def test_slurm_task_variables_become_torch_ones(clean_env):
    # task 3 of 4 on the second of two nodes
    for key, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "4",
                       "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                       "SLURM_JOB_NODELIST": "gpu[07-08]", "MASTER_PORT": "29512"}.items():
        clean_env.setenv(key, value)
    assert cluster.export_distributed_env() == {"MASTER_ADDR": "gpu07", "MASTER_PORT": "29512", "RANK": "3",
                                                "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert os.environ["RANK"] == "3"


def test_nothing_exported_without_several_tasks(clean_env):
    assert cluster.export_distributed_env() == {}  # plain process: no scheduler
    for key, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
                       "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "n1"}.items():
        clean_env.setenv(key, value)
    assert cluster.export_distributed_env() == {}  # single task
    clean_env.setenv("SLURM_NTASKS", "2")
    clean_env.setenv("RANK", "0")
    clean_env.setenv("WORLD_SIZE", "2")
    assert cluster.export_distributed_env() == {}  # torchrun / accelerate launch already did it


def test_signal_in_training_only_flags_then_reaches_the_previous_handler():
    calls = []

    def submitit_like(signum, frame):  # submitit's would checkpoint the submission and requeue
        calls.append(signum)

    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with cluster.preemptible() as stop_requested:
            with pytest.raises(SystemExit):
                with cluster.training():
                    assert not stop_requested()
                    os.kill(os.getpid(), signal.SIGUSR2)
                    assert stop_requested() and calls == []  # the training loop checkpoints here
                    after_signal = "still training"
                after_signal = "evaluating"  # not reached: the signal is handed over when training ends
        assert after_signal == "still training" and calls == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # restored
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_signal_outside_training_reaches_the_previous_handler_at_once():
    """Evaluation, data and pictures have nothing to checkpoint: the signal acts right away."""
    calls = []

    def submitit_like(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            with cluster.preemptible() as stop_requested:
                with cluster.training():
                    pass  # a finished training segment
                os.kill(os.getpid(), signal.SIGUSR2)
                pytest.fail("the signal should have ended the block")  # (SystemExit, not this Failed)
        assert calls == [signal.SIGUSR2] and not stop_requested()
        assert signal.getsignal(signal.SIGUSR2) is submitit_like
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_training_outside_preemptible_changes_nothing():
    handler = signal.getsignal(signal.SIGTERM)
    with cluster.training():
        assert signal.getsignal(signal.SIGTERM) is handler


SCRIPT = ("import os, signal\nfrom seqrender.experiments import cluster\n"
          "with cluster.preemptible() as stop_requested:\n"
          "    with cluster.training():\n"
          "        {in_training}\n"
          "        print('checkpointed' if stop_requested() else 'training', flush=True)\n"
          "    {after_training}\n"
          "    print('evaluated', flush=True)\n"
          "print('survived', flush=True)\n")


@pytest.mark.parametrize("in_training, after_training, printed", [
    ("os.kill(os.getpid(), signal.SIGTERM)", "pass", ["checkpointed"]),   # terminates when training ends
    ("pass", "os.kill(os.getpid(), signal.SIGTERM)", ["training"]),       # terminates at once
])
def test_sigterm_with_default_action_terminates_without_evaluating(in_training, after_training, printed):
    script = SCRIPT.format(in_training=in_training, after_training=after_training)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == printed
    assert proc.returncode == -signal.SIGTERM
