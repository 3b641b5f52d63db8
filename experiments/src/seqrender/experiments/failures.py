"""One clear line and a non-zero exit for every failure after the config is validated.

`reported(run_dir)` wraps the whole job. An exception leaving it is printed as ONE line on stderr
(no traceback) and the process exits with

- 2 (`USAGE_ERROR`) for user errors: `UserError`, `ConfigError`, a bad data file (`ValueError`,
  `FileNotFoundError` from the loaders, which name the file and frame), a run dir that cannot be
  written (`PermissionError`, read-only file system);
- 1 (`RUN_ERROR`) for everything else: `RunError` (no intact checkpoint, diverged training), a full
  disk (`DiskFullError`), any other exception as `error: <Type>: <message>`.

`HYDRA_FULL_ERROR=1` re-raises instead, with the full traceback. In a sweep (`-m`) the line is also
written to `<job dir>/error.txt` and the job returns normally, so the other jobs still run; the sweep
callback (`seqrender.experiments.sweep`) prints one line per failed job at the end.
"""
from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seqrender.experiments.config import ConfigError
from seqrender.experiments.data.scene_dataset import DataError

USAGE_ERROR = 2
RUN_ERROR = 1
ERROR_FILE = "error.txt"


class UserError(Exception):
    """A mistake the user can fix (config, data, run dir): one line, exit 2."""


class RunError(Exception):
    """The run cannot go on (no intact checkpoint, non-finite loss): one line, exit 1."""


class DiskFullError(RunError):
    """No space left while writing a file; the message names the file."""


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when a library hides the errno in its message."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text


def describe(exc: BaseException) -> tuple[str, int]:
    """-> (the one line to print, the exit code)."""
    first = _first_line(exc)
    if isinstance(exc, ConfigError):
        return f"config error: {first}", USAGE_ERROR
    if isinstance(exc, DataError):  # bad files on disk: `<file>: <problem>`
        return f"data error: {first}", USAGE_ERROR
    if isinstance(exc, UserError):
        return f"error: {first}", USAGE_ERROR
    if isinstance(exc, DiskFullError) or is_disk_full(exc):
        return f"error: disk full: {first}", RUN_ERROR
    if isinstance(exc, RunError):
        return f"error: {first}", RUN_ERROR
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno == errno.EROFS):
        return f"error: cannot write {exc.filename or ''}: {exc.strerror}", USAGE_ERROR
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return f"error: {first}", USAGE_ERROR
    return f"error: {type(exc).__name__}: {first}", RUN_ERROR


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


@contextmanager
def reported(run_dir: Path | None, *, sweep: bool = False) -> Iterator[None]:
    """Turn an exception into one line + exit code (see the module docstring). In a sweep the line
    goes to `<run_dir>/error.txt` too and the job returns instead of exiting."""
    if sweep and run_dir is not None:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if full_errors():
            raise
        message, code = describe(exc)
        print(message, file=sys.stderr, flush=True)
        if sweep and run_dir is not None and _record(run_dir, f"{code} {message}"):
            return
        raise SystemExit(code) from None


def _record(run_dir: Path, line: str) -> bool:
    try:
        (run_dir / ERROR_FILE).write_text(line + "\n")
        return True
    except OSError:
        return False


def read_error(job_dir: Path) -> tuple[int, str] | None:
    """(exit code, line) recorded by a failed sweep job, or None."""
    path = job_dir / ERROR_FILE
    if not path.is_file():
        return None
    code, _, line = path.read_text().strip().partition(" ")
    return (int(code) if code.isdigit() else RUN_ERROR), line
