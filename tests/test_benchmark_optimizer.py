"""`benchmarks/optimizer.py --quick` runs in CI (two gloo ranks) and its figures are consistent: each
row's ratio is its time over AdamW's, the shared-Newton–Schulz rank does half of the orthogonalisation
FLOPs (split by cost), and the headline ratio is the two Muon rows' times."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run_benchmark  # noqa: E402


def test_optimizer_quick(tmp_path):
    stdout, result = run_benchmark("optimizer.py", tmp_path)
    assert "| optimiser step |" in stdout
    rows = {r["optimiser step"]: r for r in result["rows"]}
    assert set(rows) == {"adamw", "muon, each rank all", "muon, ranks share"}
    for row in rows.values():
        assert row["over adamw"] == pytest.approx(row["ms"] / rows["adamw"]["ms"])
    alone, shared = rows["muon, each rank all"], rows["muon, ranks share"]
    assert shared["NS GFLOP/rank"] == pytest.approx(alone["NS GFLOP/rank"] / 2, rel=0.05)
    assert result["shared_over_each_rank_all"] == pytest.approx(shared["ms"] / alone["ms"])
