"""A tiny full 4Real-Video-V2 run through the CLI (embedded 4D grids -> train -> eval -> outputs), and
the one-line error for a model/dataset pair that does not fit."""
import math
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run, run_metrics  # noqa: E402

# 6 grids (2 held out) of 4 views × 3 times at 16×16, a 1-layer model.
TINY_4D = [
    "model=fourreal", "dataset=embedded4d", "threads=1",
    "dataset.num_scenes=6", "dataset.heldout_scenes=2", "dataset.times=3", "dataset.resolution=16",
    "dataset.supersample=1",
    "model.layers=1", "model.hidden=24", "model.heads=2", "model.kv_heads=1",
    "trainer.batch_size=2", "trainer.warmup_steps=1", "trainer.ema_start=1", "trainer.progress=false",
    "trainer.cond_drop_prob=0.5", "trainer.local_processes=1",
    "eval.num_items=2", "eval.batch_size=2", "eval.sample_rows=1", "schedule.num_steps=2",
]
SETTINGS = "['row->grid','column->grid','row+column->grid']"  # quoted: '>' is not a bare hydra token
METHODS = {"row->grid": {"trained", "untrained", "row_same_time"},
           "column->grid": {"trained", "untrained", "column_same_view"},
           "row+column->grid": {"trained", "untrained", "row_same_time", "column_same_view"}}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_tiny_fourreal_run_writes_metrics_pictures_and_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    _, metrics = run_metrics(*TINY_4D, "trainer.steps=3", "trainer.checkpoint_every=2",
                             f"trainer.grid_settings={SETTINGS}", f"eval.settings={SETTINGS}", run_dir=run_dir,
                             data_root=tmp_path / "data")
    assert set(metrics["eval"]) == set(METHODS)
    for setting, scores in metrics["eval"].items():
        assert set(scores) == METHODS[setting]
        for s in scores.values():
            assert math.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1
    assert metrics["train"]["steps"] == 3 and metrics["data"]["heldout_scenes"] == 2
    assert Path(metrics["train"]["checkpoint"]).name == "step_00000003"
    for name in ("samples.png", "loss_curve.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and min(image.size) > 16


@pytest.mark.parametrize("model, dataset, fitting", [
    ("fourreal", "embedded", "embedded4d"),
    ("kaleido", "embedded4d", "embedded"),
])
def test_model_dataset_mismatch_is_one_line(tmp_path, model, dataset, fitting):
    result = run(f"model={model}", f"dataset={dataset}", f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path)
    assert result.returncode == 2
    lines = _lines(result.stderr + result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    line = lines[0]
    assert line.startswith("config error: dataset: ") and f"model {model!r}" in line and f"dataset {dataset!r}" in line
    assert line.split("datasets that fit: ")[1].split(", ").count(fitting) == 1, line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_static_scenes_give_identical_time_steps_and_moving_ones_differ(tmp_path):
    from seqrender.experiments.data import Embedded4DConfig, embedded4d_dataset

    def grids(speed):
        config = Embedded4DConfig(root=str(tmp_path / f"m{speed}"), num_scenes=2, heldout_scenes=1, times=3,
                                  resolution=8, supersample=1, speed=speed)
        return embedded4d_dataset(config, split="train", progress=False).images    # (1, V, T, 3, H, W)

    still, moving = grids(0.0), grids(0.3)
    assert still.shape == (1, 4, 3, 3, 8, 8)
    assert (still == still[:, :, :1]).all()                      # nothing moves: every time step equal
    assert (moving[:, :, 0] == still[:, :, 0]).all()             # same scene and cameras at t = 0
    assert (moving[:, :, 1:] != still[:, :, 1:]).any()


@pytest.mark.parametrize("step", [None, 30.0])
def test_grid_views_sweep_an_arc_of_view_step_deg(step):
    """Camera centres read back from the world-to-camera matrices: neighbouring views are `step`
    degrees apart in azimuth (360/V for a full orbit), within the orbit's ±12.5 % jitter."""
    import math

    import torch

    from seqrender.experiments.data import Embedded4DConfig
    from seqrender.experiments.data.dynamic import grid_scene

    config = Embedded4DConfig(views=4, resolution=8, view_step_deg=step)
    for index in range(5):
        e = grid_scene(config, index).extrinsics.double()
        centres = -(e[:, :3, :3].transpose(1, 2) @ e[:, :3, 3:]).squeeze(-1)
        azimuth = torch.atan2(centres[:, 1], centres[:, 0])
        gaps = torch.rad2deg(torch.remainder(azimuth[1:] - azimuth[:-1], 2 * math.pi))
        expected = 360 / 4 if step is None else step
        assert ((gaps - expected).abs() <= 0.25 * expected + 1e-6).all(), gaps
    with pytest.raises(ValueError, match="view_step_deg"):
        Embedded4DConfig(views=4, view_step_deg=120.0)
    # unset, the field stays out of the manifest and the folder name: caches made before it stay valid
    manifest = config.manifest()
    assert ("view_step_deg" in manifest["config"]) == (step is not None)
    assert ("azimuth_step_deg" in manifest["orbit"]) == (step is not None)
    assert config.folder().name.endswith("-s0" if step is None else "-s0-d30")


@pytest.mark.parametrize("motion", ["free", "vertical"])
def test_grid_motion_moves_primitives_along_world_up_when_vertical(motion):
    """Centres at every time step read back from the scene: with motion="vertical" each primitive's
    x and y stay put and only z changes (by at most `speed` per step); "free" moves them in 3-D with
    the same speeds and up/down signs, so the two differ only in direction."""
    import torch

    from seqrender.experiments.data import Embedded4DConfig
    from seqrender.experiments.data.dynamic import grid_scene

    config = Embedded4DConfig(views=4, resolution=8, motion=motion)
    free = Embedded4DConfig(views=4, resolution=8)
    for index in range(6):
        scene, reference = grid_scene(config, index), grid_scene(free, index)
        for time in range(config.times):
            shift = torch.stack([p.centre for p in scene.at(time)]) - torch.stack([p.centre for p in scene.primitives])
            xy, z = shift[:, :2].abs().max(), shift[:, 2].abs()
            if motion == "vertical":
                assert xy == 0 and (z <= time * config.speed + 1e-6).all()
                ref_z = torch.stack([p.centre for p in reference.at(time)])[:, 2] - torch.stack([p.centre for p in reference.primitives])[:, 2]
                assert (torch.sign(shift[:, 2]) == torch.sign(ref_z)).all()
                ref = torch.stack([p.centre for p in reference.at(time)]) - torch.stack([p.centre for p in reference.primitives])
                assert torch.allclose(shift.norm(dim=-1), ref.norm(dim=-1), atol=1e-6)
            elif time:
                assert xy > 0
    with pytest.raises(ValueError, match="motion"):
        Embedded4DConfig(motion="sideways")
    assert ("motion" in config.manifest()["config"]) == (motion != "free")
    assert config.folder().name.endswith("-s0" if motion == "free" else "-s0-vertical")


def test_grid_scene_design_fields_reach_the_scenes_and_the_manifest():
    from seqrender.experiments.data import Embedded4DConfig
    from seqrender.experiments.data.dynamic import grid_scene
    from seqrender.experiments.data.scenes import SceneConfig

    plain = Embedded4DConfig(min_primitives=1, max_primitives=1, part_colours=False)
    for index in range(4):
        (primitive,) = grid_scene(plain, index).primitives                 # exactly one primitive
        colours = [c for k, v in vars(primitive).items() if "colour" in k for c in v.tolist()]
        assert len({tuple(c) for c in colours}) == 1                       # one colour for all its parts
    assert plain.manifest()["scene"]["part_colours"] is False and "part_colours" not in plain.manifest()["config"]
    assert plain.folder().name.endswith("-p11u") and Embedded4DConfig().scene() == SceneConfig()
    with pytest.raises(ValueError, match="min_primitives"):
        Embedded4DConfig(min_primitives=3, max_primitives=2)


def test_grid_loss_counts_only_unknown_cells():
    import torch

    from seqrender.experiments.grid import GridBatch, given_cells, grid_flow_loss

    gen = torch.Generator().manual_seed(0)
    x, noise = torch.rand(2, 3, 4, 3, 4, 4, generator=gen) * 2 - 1, torch.randn(2, 3, 4, 3, 4, 4, generator=gen)
    batch = GridBatch(x=x, noise=noise, t=torch.tensor([0.3, 0.9]), given=given_cells(3, 4).expand(2, 3, 4),
                      drop_condition=torch.tensor([False, True]))
    loss = grid_flow_loss(lambda z, t, **_: torch.zeros_like(z), batch)
    target = (noise - x).double()[:, 1:, 1:]                      # the 2 × 3 unknown cells (v ≥ 1, t ≥ 1)
    assert torch.allclose(loss.double(), target.pow(2).mean(), rtol=1e-5)
