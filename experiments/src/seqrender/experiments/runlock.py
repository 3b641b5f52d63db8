"""An exclusive lock on a run directory, so two runs never write the same files.

`locked(run_dir, rank)` takes a non-blocking `fcntl.flock` on `<run_dir>/.lock` (`.lock.<rank>` for
the other processes of a multi-process job, so the ranks of one job do not block each other) and
holds it until the block ends or the process dies (the kernel drops it then: nothing goes stale).
A second run on the same directory stops at once with one line naming the holder's pid.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seqrender.experiments.failures import UserError


@contextmanager
def locked(run_dir: Path, rank: int = 0) -> Iterator[Path]:
    path = run_dir / (".lock" if rank == 0 else f".lock.{rank}")
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(f"run dir {run_dir} is in use by another run (pid {holder}); wait for it to end "
                            f"or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
