"""`<run_dir>/run.log`: what the console shows, minus progress-bar redraws.

`teed(path)` copies everything written to stdout and stderr into the log (appending, so a resumed
run adds to it). A line redrawn with carriage returns (tqdm) is logged once, in its last state.
Hydra's own log records go to the same file through its file handler.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO


class Tee:
    """A text stream writing to `stream` and, line by line without `\\r` redraws, to `log`."""

    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log, self.pending = stream, log, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.log.write(final_state(line) + "\n")
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def close_line(self) -> None:
        if self.pending.strip("\r "):
            self.log.write(final_state(self.pending) + "\n")
        self.pending = ""

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def final_state(line: str) -> str:
    """What a terminal shows of `line` after its carriage-return redraws: the last non-empty part."""
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1] if parts else ""


@contextmanager
def teed(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(sys.stdout, log), Tee(sys.stderr, log)
        try:
            yield
        finally:
            for tee in (sys.stdout, sys.stderr):
                tee.close_line()
                tee.flush()
            sys.stdout, sys.stderr = saved
