"""README "The main job": the same command on the same machine (torch build, CPU kind, thread
count) gives bit-identical numbers. Two tiny runs with 2 threads, compared exactly."""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run_metrics  # noqa: E402


def test_same_command_same_threads_is_bit_identical(tmp_path):
    overrides = [o for o in TINY if not o.startswith("threads=")] + ["threads=2", "trainer.steps=3"]
    runs = [run_metrics(*overrides, run_dir=tmp_path / f"run{i}", data_root=tmp_path / "data")[1] for i in range(2)]
    assert runs[0]["eval"] == runs[1]["eval"]                      # exact float equality, every method
    assert runs[0]["train"]["final_loss"] == runs[1]["train"]["final_loss"]
    weights = [load_file(Path(r["train"]["checkpoint"]) / "ema.safetensors") for r in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
