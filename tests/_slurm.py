"""The local single-node SLURM of `scripts/slurm_local.sh`, as a session fixture for the SLURM tests.

Started once per session (installing slurm-wlm, munge, slurmdbd and mariadb-server through apt on a
fresh machine), stopped at the end only if this session started it. Needs root: skipped with the
reason otherwise. A failure to install or start (no apt, no network) fails the tests with the
script's message: CI must not report green without having exercised SLURM.

One slurmd per machine, and each xdist worker has its own session: the root `conftest.py` keeps
every test file that uses `local_slurm` on one worker (its `SLURM_FILES`, checked by
`tests/test_suite_wiring.py`), so no worker stops the daemons under another.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from _runs import REPO

SCRIPT = REPO / "scripts" / "slurm_local.sh"


def _script(command: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory) -> dict[str, str]:
    """Environment variables that point SLURM's clients (and submitit) at the running local cluster."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM needs root (scripts/slurm_local.sh installs packages and starts daemons)")
    env = {**os.environ, "SEQRENDER_SLURM_DIR": os.environ.get("SEQRENDER_SLURM_DIR", "/tmp/seqrender-slurm")}
    was_running = _script("status", env).returncode == 0
    started = _script("start", env)
    if started.returncode != 0:
        pytest.fail(f"scripts/slurm_local.sh start failed:\n{started.stderr[-3000:]}", pytrace=False)
    conf = Path(env["SEQRENDER_SLURM_DIR"]) / "etc" / "slurm.conf"
    yield {"SLURM_CONF": str(conf)}
    if not was_running:
        _script("stop", env)


def sacct_states(job_ids: list[str], env: dict[str, str]) -> dict[str, str]:
    """{job id: state} of whole jobs (not steps), from SLURM's accounting."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                         env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def final_states(job_ids: list[str], env: dict[str, str], timeout: float = 60) -> dict[str, str]:
    """`sacct_states` once accounting lists every job and none is PENDING/RUNNING/COMPLETING (a job's
    result file is written before its processes exit, and sacct may not list a job yet), or as they
    are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = sacct_states(job_ids, env)
        settled = set(job_ids) <= states.keys() and not {"PENDING", "RUNNING", "COMPLETING"} & set(states.values())
        if settled or time.monotonic() > deadline:
            return states
        time.sleep(0.5)
