"""Helpers for the integration tests that run `experiments/run.py` in a subprocess at a tiny size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "experiments" / "run.py"

# A run small enough for a test: 8 scenes (2 held out) of 6 views at 16×16, a 1-layer model.
TINY = [
    "threads=1", "dataset.num_scenes=8", "dataset.heldout_scenes=2", "dataset.views_per_scene=6",
    "dataset.resolution=16", "dataset.supersample=1",
    "model.layers=1", "model.hidden=32", "model.heads=2", "model.kv_heads=1", "model.window=2", "model.patch_size=4",
    "trainer.views=4", "trainer.batch_size=2", "trainer.local_processes=1", "trainer.warmup_steps=1", "trainer.ema_start=1",
    "trainer.progress=false",
    "eval.num_items=2", "eval.batch_size=2", "eval.sample_rows=1", "schedule.num_steps=2",
]


def env(data_root: Path) -> dict[str, str]:
    """The environment of a test run: its own data root, one thread, no colour codes."""
    return {**os.environ, "SEQRENDER_DATA": str(data_root), "OMP_NUM_THREADS": "1", "NO_COLOR": "1",
            "HYDRA_FULL_ERROR": "0"}


def command(*overrides: str) -> list[str]:
    return [sys.executable, str(RUN), *overrides]


def run(*overrides: str, data_root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command(*overrides), cwd=REPO, env=env(data_root), capture_output=True, text=True,
                          timeout=timeout)


def run_metrics(*overrides: str, run_dir: Path, data_root: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run into `run_dir`, require success, and return the process and its metrics.json."""
    result = run(*overrides, f"hydra.run.dir={run_dir}", data_root=data_root)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads((run_dir / "metrics.json").read_text())


def run_benchmark(script: str, tmp_path: Path) -> tuple[str, dict]:
    """`benchmarks/<script> --quick --json ...`: (its printed table, its JSON); fails the test on error."""
    out = tmp_path / f"{Path(script).stem}.json"
    proc = subprocess.run([sys.executable, script, "--quick", "--json", str(out)],
                          cwd=REPO / "benchmarks", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())
