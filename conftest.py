"""Test-suite wiring shared by every test folder.

`make test` runs the suite on two pytest-xdist workers with `--dist loadfile`: each test file runs
on one worker, so a file's module-scoped fixtures (a trained run, a torch venv) are built once. The
files that drive the local SLURM count as one file here: `tests/_slurm.py`'s session fixture starts
one slurmd and stops it when its worker ends, so they must run one after another on one worker.
"""
from __future__ import annotations

from pathlib import PurePath

import pytest

SLURM_FILES = {"test_slurm_requeue.py", "test_slurm_sweep.py"}


def file_scope(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or "slurm" for the files that use the local SLURM."""
    path = nodeid.split("::", 1)[0]
    return "slurm" if PurePath(path).name in SLURM_FILES else path


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored where xdist is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return file_scope(nodeid)

    return FileScheduling(config, log)
