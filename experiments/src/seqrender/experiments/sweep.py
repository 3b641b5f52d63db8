"""The end of a sweep (`run.py -m ...`): one line per failed job, naming its directory.

A failed sweep job records its one-line error in `<job dir>/error.txt` and returns
(`seqrender.experiments.failures.reported`), so the other jobs still run and no launcher prints a
long `UncompletedJobError`. `FailedJobs` (a Hydra callback, registered in config.yaml) then prints
`failed job <dir>: <line>` for each of them and exits 2 if all were user errors, else 1.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seqrender.experiments.failures import ERROR_FILE, RUN_ERROR, USAGE_ERROR, read_error


def failed_jobs(sweep_dir: Path, *, since: float = 0.0) -> list[tuple[Path, int, str]]:
    """(job dir, exit code, line) of every job under `sweep_dir` whose error.txt is not older than `since`."""
    found = []
    for path in sorted(sweep_dir.glob(f"*/{ERROR_FILE}")):
        recorded = read_error(path.parent)
        if recorded and path.stat().st_mtime >= since:
            found.append((path.parent, *recorded))
    return found


class FailedJobs(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file mtimes may be coarser than time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = failed_jobs(Path(config.hydra.sweep.dir), since=getattr(self, "started", 0.0))
        for job_dir, _, line in failed:
            print(f"failed job {job_dir}: {line}", file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(USAGE_ERROR if all(code == USAGE_ERROR for _, code, _ in failed) else RUN_ERROR)
