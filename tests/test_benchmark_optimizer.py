"""`benchmarks/optimizer.py --quick` runs in CI (two gloo ranks) and its figures are consistent: each
row's ratio is its time over AdamW's, the shared-Newton–Schulz rank does half of the orthogonalisation
FLOPs (split by cost) in each Newton–Schulz form, the Gram form ("auto") counts fewer FLOPs on the
main job's wide matrices, and the headline ratios are the rows' times."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run_benchmark  # noqa: E402


def test_optimizer_quick(tmp_path):
    stdout, result = run_benchmark("optimizer.py", tmp_path)
    assert "| optimiser step |" in stdout
    rows = {r["optimiser step"]: r for r in result["rows"]}
    forms = ("direct", "auto")
    assert set(rows) == {"adamw"} | {f"muon, {who}, {form}" for who in ("each rank all", "ranks share")
                                     for form in forms}
    for row in rows.values():
        assert row["over adamw"] == pytest.approx(row["ms"] / rows["adamw"]["ms"])
    for form in forms:
        alone, shared = rows[f"muon, each rank all, {form}"], rows[f"muon, ranks share, {form}"]
        assert shared["NS GFLOP/rank"] == pytest.approx(alone["NS GFLOP/rank"] / 2, rel=0.05)
    # the main job's adaLN and SwiGLU matrices are wide, so the Gram form ("auto") does fewer FLOPs
    assert rows["muon, each rank all, auto"]["NS GFLOP/rank"] < rows["muon, each rank all, direct"]["NS GFLOP/rank"]
    assert result["shared_over_each_rank_all"] == pytest.approx(
        rows["muon, ranks share, auto"]["ms"] / rows["muon, each rank all, auto"]["ms"])
    assert result["auto_over_direct_shared"] == pytest.approx(
        rows["muon, ranks share, auto"]["ms"] / rows["muon, ranks share, direct"]["ms"])
