"""`benchmarks/train_throughput.py --quick` runs in CI and its figures are consistent: tokens/s =
samples/s · 8 views · 8×8 tokens, useful GFLOP/s = GFLOP/step ÷ step seconds, utilisation = useful ÷
the matmul rate measured in the same run."""
import sys
from pathlib import Path

import pytest
import torch

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


def test_policy_row_is_measured_in_a_child_with_that_policy(monkeypatch):
    """The full run's last row: the same step in a fresh process that got OMP_WAIT_POLICY (OpenMP reads
    it once, at start), reported under that policy with the same FLOPs as in this process."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    import train_throughput

    child = train_throughput.row_in_child((2, 1, None), 1, OMP_WAIT_POLICY="PASSIVE")
    threads = torch.get_num_threads()
    try:
        here = train_throughput.row_for(2, 1, None, 1)
    finally:
        torch.set_num_threads(threads)                                     # row_for sets the thread count
    assert (child["OpenMP wait"], here["OpenMP wait"]) == ("PASSIVE", "default")
    assert child["batch"] == 2 and child["threads"] == 1 and child["optimizer"] == "muon"
    assert child["GFLOP/step"] == pytest.approx(here["GFLOP/step"])
    assert child["samples/s"] == pytest.approx(2 / child["step s"])
