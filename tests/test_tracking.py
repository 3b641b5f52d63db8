"""Experiment tracking (`trainer.tracker`, default TensorBoard): a tiny run through `run.py` writes
event files that TensorBoard's own reader (EventAccumulator) reads back with the step log's figures,
the held-out scores of metrics.json and samples.png; a resumed run leaves one value per step."""
import importlib.util
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run  # noqa: E402

from seqrender.experiments.config import ConfigError  # noqa: E402
from seqrender.experiments.tracking import check_available  # noqa: E402

ARGS = [*TINY, "trainer.steps=3", "trainer.log_every=1", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=3",
        "eval.num_items=1", "eval.settings=['3->1']"]
STEP_LINE = re.compile(r"^step (\d+)/3 loss ([0-9.]+) lr ([0-9.e+-]+) grad_norm ([0-9.e+-]+) "
                       r"max_act ([0-9.e+-]+)@block(\d+)", re.M)


def _events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_records_the_step_log_eval_and_samples_and_purges_on_resume(tmp_path):
    run_dir, data = tmp_path / "run", tmp_path / "data"
    first = run(*ARGS, f"hydra.run.dir={run_dir}", data_root=data)
    assert first.returncode == 0, first.stderr[-3000:]
    printed = {int(m[0]): m[1:] for m in STEP_LINE.findall(first.stdout)}
    assert sorted(printed) == [1, 2, 3]

    shutil.rmtree(run_dir / "checkpoints" / "step_00000003")  # as if killed after logging step 3
    second = run(*ARGS, f"hydra.run.dir={run_dir}", data_root=data)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "step_00000002" in second.stdout and [int(m[0]) for m in STEP_LINE.findall(second.stdout)] == [3]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2

    events = _events(run_dir)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/max_activation", "max_activation/block_0",
            "throughput/samples_per_s", "throughput/tokens_per_s", "throughput/model_gflops"} <= tags
    # printed with 4 decimals (loss), 3 significant digits (lr), 4 significant digits (the others)
    for tag, column, tol in (("train/loss", 0, {"abs": 5.01e-5}), ("train/lr", 1, {"rel": 5.01e-3}),
                             ("train/grad_norm", 2, {"rel": 5.01e-4}), ("train/max_activation", 3, {"rel": 5.01e-4})):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3], tag  # the resumed run's step 3 replaced the first's
        for e in logged:
            assert e.value == pytest.approx(float(printed[e.step][column]), **tol), (tag, e.step)

    metrics = json.loads((run_dir / "metrics.json").read_text())["eval"]["3->1"]["trained"]
    for name in ("psnr", "ssim"):
        [score] = events.Scalars(f"eval/3_to_1/trained/{name}")
        assert (score.step, score.value) == (3, pytest.approx(metrics[name], rel=1e-6))

    [image] = events.Images("samples")
    with Image.open(run_dir / "samples.png") as png:
        assert (image.step, image.width, image.height) == (3, *png.size)
        decoded = Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")
        assert np.array_equal(np.asarray(decoded), np.asarray(png.convert("RGB")))


def test_tracker_none_writes_nothing_and_missing_wandb_is_one_line(tmp_path):
    result = run(*ARGS, "trainer.steps=1", "trainer.tracker=none", f"hydra.run.dir={tmp_path / 'run'}",
                 data_root=tmp_path / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "run" / "tensorboard").exists()
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match=r"^trainer.tracker: wandb is not installed \(pip install wandb\)"):
            check_available("wandb")
    check_available("tensorboard")
