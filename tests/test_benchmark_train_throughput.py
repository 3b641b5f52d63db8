"""`benchmarks/train_throughput.py --quick` runs in CI and its figures are consistent: tokens/s =
samples/s · 8 views · 8×8 tokens, useful GFLOP/s = GFLOP/step ÷ step seconds, utilisation = useful ÷
the matmul rate measured in the same run."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run_benchmark  # noqa: E402


def test_train_throughput_quick(tmp_path):
    stdout, result = run_benchmark("train_throughput.py", tmp_path)
    assert "| batch |" in stdout
    (row,) = result["rows"]
    assert row["batch"] == 4 and row["GFLOP/step"] > 0 and row["optimizer"] == "muon"  # the main job's
    assert row["samples/s"] == pytest.approx(4 / row["step s"])
    assert row["tokens/s"] == pytest.approx(row["samples/s"] * 8 * 8 * 8)
    assert row["useful GFLOP/s"] == pytest.approx(row["GFLOP/step"] / row["step s"])
    assert row["utilisation"] == pytest.approx(row["useful GFLOP/s"] / row["matmul GFLOP/s"])
