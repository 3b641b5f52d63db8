"""`benchmarks/train_throughput.py --quick` runs in CI and its figures are consistent: tokens/s =
samples/s · 4 views · 8×8 tokens, useful GFLOP/s = GFLOP/step ÷ step seconds, utilisation = useful ÷
the matmul rate measured in the same run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_train_throughput_quick(tmp_path):
    out = tmp_path / "tp.json"
    proc = subprocess.run([sys.executable, "train_throughput.py", "--quick", "--json", str(out)],
                          cwd=REPO / "benchmarks", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| batch |" in proc.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["batch"] == 8 and row["GFLOP/step"] > 0 and row["optimizer"] == "muon"  # the main job's
    assert row["samples/s"] == pytest.approx(8 / row["step s"])
    assert row["tokens/s"] == pytest.approx(row["samples/s"] * 4 * 8 * 8)
    assert row["useful GFLOP/s"] == pytest.approx(row["GFLOP/step"] / row["step s"])
    assert row["utilisation"] == pytest.approx(row["useful GFLOP/s"] / row["matmul GFLOP/s"])
