"""SLURM glue for training jobs: the torch.distributed environment of a task, and the pre-timeout /
preemption signals turned into "checkpoint, then requeue".

- `export_distributed_env()` runs before the Accelerator starts. In a multi-task submitit job
  (`hydra/launcher=submitit_slurm` with `tasks_per_node`/`nodes` > 1, or `submitit_local`) it exports
  MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from SLURM's task
  variables (submitit's `TorchDistributedEnvironment`), so accelerate starts DDP (gloo on CPU, NCCL on
  GPU). Under `torchrun` / `accelerate launch` (RANK already set) and in single-task runs it does
  nothing.
- `preemptible()` is a context manager around the whole job. It watches SLURM's pre-timeout signal
  (submitit's: SIGUSR2 unless `SUBMITIT_PREEMPT_SIGNAL` says otherwise; sent `signal_delay_s` before
  the time limit), SIGTERM (preemption, `scontrol requeue`, `scancel`) and SIGINT (Ctrl-C).
  - Inside a `training()` block (the training loop), such a signal only raises a flag. The loop
    polls it each step (`stop_requested`), writes a checkpoint and returns. When the block ends, the
    signal is handed over.
  - Elsewhere (data, evaluation, milestone scores, pictures) there is nothing to checkpoint: the
    weights are already on disk. The signal is handed over at once, instead of after minutes of
    evaluation. Evaluation is redone on the rerun.
  Handing over runs the handler that was there before. submitit's pickles the job's submission
  (hydra-submitit-launcher resubmits itself with the same overrides, so the job reruns in the same
  run directory), calls `scontrol requeue` and exits; the requeued job resumes from the newest
  checkpoint of that run directory. Outside submitit the signal's default action (termination)
  follows; Ctrl-C ends with one line and exit status 130.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Callable, Iterator

log = logging.getLogger(__name__)

DISTRIBUTED_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def export_distributed_env() -> dict[str, str]:
    """Export the torch.distributed `env://` variables of this submitit task; returns what was set
    ({} when the variables are already there, outside a submitit job, or with a single task)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return {}
    from submitit.helpers import TorchDistributedEnvironment

    try:
        dist_env = TorchDistributedEnvironment()
    except RuntimeError:  # submitit: "Could not figure out which environment the job is running in"
        return {}
    if dist_env.world_size == 1:
        return {}
    # CUDA_VISIBLE_DEVICES is left alone: accelerate picks cuda:LOCAL_RANK among the node's GPUs.
    dist_env.export(set_cuda_visible_devices=False, overwrite=True)
    exported = {key: os.environ[key] for key in DISTRIBUTED_VARS}
    log.info("exported torch.distributed environment %s", exported)
    return exported


def requeue_signal() -> signal.Signals:
    """The signal submitit turns into checkpoint + requeue (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    try:
        return signal.Signals[f"SIG{name}"]
    except KeyError:
        raise ValueError(f"SUBMITIT_PREEMPT_SIGNAL={name!r} is not a signal name (e.g. USR1, USR2)") from None


@dataclass
class _Watch:
    """The innermost `preemptible()` block: the handlers it replaced, the first signal it caught, and
    how many `training()` blocks are open (signals wait for their checkpoint only while one is)."""

    previous: dict[int, Callable | int | None] = field(default_factory=dict)
    caught: int | None = None
    training: int = 0
    handed_over: bool = False

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def hand_over(self, signum: int, *, checkpointed: bool = True) -> None:
        """Stop watching, then let the handler that was there before act on `signum` (once)."""
        self.restore()
        if not self.handed_over:
            self.handed_over = True
            _hand_over(signum, self.previous[signum], checkpointed=checkpointed)


_watch: _Watch | None = None


@contextmanager
def preemptible() -> Iterator[Callable[[], bool]]:
    """Yield `stop_requested()`: true once a watched signal arrived inside a `training()` block. On
    leaving that block, or at once outside one, hand the signal to the previous handler (submitit:
    requeue and exit) or to its default action."""
    global _watch
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # Python only delivers signals to the main thread
        return
    watch, outer = _Watch(), _watch

    def record(signum: int, frame: FrameType | None) -> None:
        if watch.training:
            log.warning("caught %s: checkpointing at the end of this step", signal.Signals(signum).name)
            watch.caught = watch.caught or signum
            return
        watch.hand_over(signum, checkpointed=False)

    watched = (requeue_signal(), signal.SIGTERM, signal.SIGINT)
    watch.previous = {signum: signal.signal(signum, record) for signum in watched}
    _watch = watch
    try:
        yield lambda: watch.caught is not None
    finally:
        _watch = outer
        watch.restore()
    if watch.caught is not None:
        watch.hand_over(watch.caught)


@contextmanager
def training() -> Iterator[None]:
    """Mark the training loop: inside, the signals of the enclosing `preemptible()` block only raise
    its flag (the loop checkpoints, then returns); leaving normally after one arrived hands it over
    right away, so that evaluation does not run first. Does nothing outside `preemptible()`."""
    watch = _watch
    if watch is None:
        yield
        return
    watch.training += 1
    try:
        yield
    finally:
        watch.training -= 1
    if watch.caught is not None and not watch.training:
        watch.hand_over(watch.caught)


def _hand_over(signum: int, handler: Callable | int | None, *, checkpointed: bool = True) -> None:
    """Let the pre-existing handler act on `signum`, as if it had just arrived (after the training
    loop's checkpoint, or outside training at once); Ctrl-C (SIGINT) ends with one line and exit
    status 130 instead of a KeyboardInterrupt traceback, also when the run inherited SIGINT ignored
    (started with `&` from a script): it did stop."""
    if signum == signal.SIGINT and handler in (signal.default_int_handler, signal.SIG_IGN, signal.SIG_DFL):
        done = "checkpoint written" if checkpointed else "no training step was running, nothing is lost"
        print(f"interrupted (SIGINT): {done}; rerun the same command to resume", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGINT)
    if callable(handler):
        try:
            handler(signum, None)  # submitit rank 0: pickle the resubmission, `scontrol requeue`, sys.exit
        except subprocess.CalledProcessError as exc:
            log.error("%s failed: SLURM is already requeuing or ending this job", exc.cmd)
        raise SystemExit(-1)  # other ranks, SIGTERM (SLURM requeues/cancels): end without a result
    if handler == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
