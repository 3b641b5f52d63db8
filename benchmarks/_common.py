"""Shared benchmark helpers: CLI, timing, this CPU's float32 matmul rate, table + JSON output."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def parse_args(description: str) -> argparse.Namespace:
    """Standard benchmark CLI: `--quick` (small sizes) and `--json PATH`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    return parser.parse_args()


def time_fn(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of `fn()` in seconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each fn, timed round-robin so that load changes hit every variant alike."""
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_fn(fn, warmup=0, repeats=1))
    return {name: statistics.median(ts) for name, ts in samples.items()}


def matmul_gflops(n: int = 1024, *, repeats: int = 5) -> float:
    """This CPU's float32 (n × n) @ (n × n) rate in GFLOP/s (median of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / time_fn(lambda: a @ b, warmup=2, repeats=repeats) / 1e9


def report(title: str, rows: Sequence[dict], *, json_path: Path | None = None, **meta) -> str:
    """Print `rows` as a Markdown table (plus `meta` lines) and write everything to `json_path`."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else "–" if v is None else str(v)
    lines = [f"### {title}", ""]
    lines += [f"- {k}: {fmt(v)}" for k, v in meta.items()]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"title": title, **meta, "rows": list(rows)}, indent=2))
    return text


def time_interleaved(
    fns: Sequence[Callable[[], object]], *, warmup: int = 1, repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Best wall time of each `fn()` in seconds, calling them in turn `repeats` times, so that
    load from other processes hits all of them alike; ratios of the results are the robust figure.
    `clock=time.thread_time` measures this thread's CPU time instead (with one torch thread, the
    work done, unaffected by time spent descheduled on a shared machine)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            best[i] = min(best[i], clock() - start)
    return best


def time_round_robin(steps: dict, *, repeats: int = 5) -> dict:
    """Median seconds of each zero-argument callable in `steps`, timed in turn (one warm-up each)
    so that load changes on a shared machine hit every step alike."""
    for step in steps.values():
        step()
    samples = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            samples[key].append(time_fn(step, warmup=0, repeats=1))
    return {key: statistics.median(values) for key, values in samples.items()}
