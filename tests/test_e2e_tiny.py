"""A tiny full run of the main job through the CLI: data generation, training, evaluation, outputs."""
import math
import sys
from pathlib import Path

from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run_metrics  # noqa: E402

METHODS = {"trained", "trained_1step", "shuffled_references", "untrained", "mean_reference", "nearest_reference"}


def test_tiny_run_writes_metrics_pictures_and_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result, metrics = run_metrics(*TINY, "trainer.steps=4", "trainer.checkpoint_every=2",
                                  "dataset.views_per_scene=9", run_dir=run_dir, data_root=tmp_path / "data")
    assert set(metrics["eval"]) == {"1->3", "3->1"}
    for setting, methods in metrics["eval"].items():
        # the main job's preset scores shuffled references only in 3->1 (eval.shuffled_settings)
        assert set(methods) == METHODS - ({"shuffled_references"} if setting == "1->3" else set())
        for scores in methods.values():
            assert math.isfinite(scores["psnr"]) and -1 <= scores["ssim"] <= 1
            for name in ("psnr", "ssim"):
                lo, hi = scores[f"{name}_ci95"]
                assert lo <= scores[name] <= hi
    # With one reference, the nearest reference IS the mean of the references.
    assert metrics["eval"]["1->3"]["mean_reference"] == metrics["eval"]["1->3"]["nearest_reference"]
    assert metrics["train"]["steps"] == 4 and metrics["train"]["seconds"] > 0
    assert set(metrics["orbit_psnr"]) == {"1 references"}  # 3 references + 8 targets need 11 views
    for name in ("samples.png", "loss_curve.png", "orbit.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and min(image.size) > 16
    ckpt = Path(metrics["train"]["checkpoint"])
    assert ckpt.parent == run_dir / "checkpoints" and ckpt.name == "step_00000004"
    weights = load_file(ckpt / "ema.safetensors")
    assert weights and all(t.dtype.is_floating_point for t in weights.values())
    assert "held-out evaluation" in result.stdout


def test_milestones_pause_and_resume_exactly(tmp_path):
    """Pausing at eval.milestones to score the EMA, then resuming, gives bit-identical final weights
    to an uninterrupted run (the pause is a checkpoint + resume, which is exact), and records the
    milestone scores."""
    runs = {}
    for name, extra in (("plain", []), ("paused", ["eval.milestones=[2,3]"])):
        run_dir = tmp_path / name
        _, metrics = run_metrics(*TINY, "trainer.steps=5", "eval.orbit=false", *extra, run_dir=run_dir,
                                 data_root=tmp_path / "data")
        runs[name] = (metrics, load_file(Path(metrics["train"]["checkpoint"]) / "ema.safetensors"))
    (plain, plain_ema), (paused, paused_ema) = runs["plain"], runs["paused"]
    assert plain_ema.keys() == paused_ema.keys()
    assert all((plain_ema[k] == paused_ema[k]).all() for k in plain_ema)
    assert plain["train"]["final_loss"] == paused["train"]["final_loss"]
    assert set(paused["milestones"]) == {"2", "3"} and plain["milestones"] == {}
    assert set(paused["milestones"]["2"]) == {"train_seconds", "1->3", "3->1"}
