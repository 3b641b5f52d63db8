"""`trainer.local_processes=N`: one command starts N data-parallel processes on this machine.

On a small CPU, N one-thread processes (DDP over gloo) train faster than one process with N OpenMP
threads (README "The main job" measures it); on a GPU box, N = the GPUs. `python experiments/run.py`
re-executes itself N times with the torch.distributed `env://` variables (rank, world size, a free
local port) and one shared `hydra.run.dir`, which is what `torchrun --standalone` does, without
torchrun's multi-line failure report: rank 0 prints to the terminal, the other ranks' output goes to
`<run dir>/rank<k>.log`, and when a rank fails the others are stopped and the launcher exits with
that rank's status, its last line repeated if rank 0 did not end with its own error.

Nothing is relaunched under torchrun / accelerate launch / a submitit task (RANK already set), in a
Hydra sweep (`-m`: its launcher starts the jobs), or when N is 1.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def wanted(processes: int, argv: list[str]) -> bool:
    """True when this command should start `processes` local processes."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    return processes > 1 and "RANK" not in os.environ and not multirun


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int, threads: int) -> dict[str, str]:
    """The environment of local rank `rank`: env:// variables and `threads` OpenMP threads."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
           "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)}
    for key in THREADS_ENV:
        env.setdefault(key, str(threads))
    return env


def threads_per_process(processes: int, threads: int) -> int:
    """`threads` if set (config `threads`), else this machine's cores shared out."""
    return threads or max(1, (os.cpu_count() or 1) // processes)


def launch(script: str, argv: list[str], *, processes: int, run_dir: Path, threads: int = 0) -> int:
    """Run `script argv hydra.run.dir=run_dir` as `processes` ranks; return the exit status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port, per = free_port(), threads_per_process(processes, threads)
    command = [sys.executable, script, *argv, f"hydra.run.dir={run_dir}"]
    logs = [None] + [open(run_dir / f"rank{k}.log", "a") for k in range(1, processes)]
    ranks = [subprocess.Popen(command, env=rank_env(k, processes, port, per),
                              stdout=logs[k] or None, stderr=subprocess.STDOUT if logs[k] else None)
             for k in range(processes)]
    # Ctrl-C reaches every rank from the terminal (each checkpoints); the launcher only waits.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = _wait(ranks)
    finally:
        signal.signal(signal.SIGINT, previous)
        for log in logs[1:]:
            log.close()
    failed = next((k for k, p in enumerate(ranks) if p.returncode not in (0, None) and k > 0), None)
    if status and failed is not None and ranks[0].returncode in (0, -signal.SIGTERM, -signal.SIGKILL):
        print(_last_line(run_dir / f"rank{failed}.log") or f"rank {failed} failed (exit {status})", file=sys.stderr)
    return status


def _wait(ranks: list[subprocess.Popen], grace: float = 30.0, own: float = 10.0) -> int:
    """Wait for every rank. After the first failure, give the others `own` seconds to end by
    themselves (a user error fails every rank, and rank 0 then says so itself), then stop them.
    Returns the first failure's status (0 if all succeeded)."""
    while True:
        codes = [p.poll() for p in ranks]
        bad = next((c for c in codes if c not in (0, None)), None)
        if bad is not None:
            _stop(ranks, own=own, grace=grace)
            return bad if bad > 0 else 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _stop(ranks: list[subprocess.Popen], *, own: float, grace: float) -> None:
    for p in ranks:
        try:
            p.wait(timeout=own)
        except subprocess.TimeoutExpired:
            p.terminate()
    for p in ranks:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _last_line(path: Path) -> str | None:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else None
