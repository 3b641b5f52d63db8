"""Task "recon": novel cameras of the 4-D scenes, the geometry scoring (Chamfer / IoU / carving)
against analytic references, and a tiny run through the CLI."""
import math
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run_metrics  # noqa: E402

from seqrender.experiments.data.dynamic import Embedded4DConfig, grid_scene  # noqa: E402
from seqrender.experiments.data.dynamic_views import geometry_cameras, novel_cameras, true_geometry  # noqa: E402
from seqrender.experiments.data.primitives import Sphere  # noqa: E402
from seqrender.experiments.data.renderer import render  # noqa: E402
from seqrender.experiments.recon_eval import carve, geometry_scores  # noqa: E402
from seqrender.recon.metrics import volume_iou, voxel_centres  # noqa: E402
from seqrender.recon.rasterizer import Gaussians, RasterConfig  # noqa: E402

TINY_RECON = [
    "model=recon", "dataset=embedded4d", "threads=1", "dataset.num_scenes=5", "dataset.heldout_scenes=2",
    "dataset.times=2", "dataset.resolution=8", "dataset.supersample=1",
    "model.depth=2", "model.head_layers=[0,1]", "model.embed_dim=16", "model.num_heads=2",
    "trainer.warmup_steps=1", "trainer.ema_start=1", "trainer.progress=false", "eval.num_items=2",
    "eval.baseline_iterations=2",
]


def sphere(radius=0.5, centre=(0.1, -0.2, 0.05)):
    return Sphere(torch.tensor(centre), torch.eye(3), radius=radius, colours=torch.ones(1, 3), lon_cells=1, lat_cells=1)


def sphere_gaussians(s: Sphere, n=600, shift=(0.0, 0.0, 0.0)) -> Gaussians:
    """Opaque small Gaussians on the sphere's surface (Fibonacci lattice)."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5 ** 0.5) * i
    r = (1 - z * z).sqrt()
    points = torch.stack([r * phi.cos(), r * phi.sin(), z], -1) * s.radius + s.centre + torch.tensor(shift)
    return Gaussians(means=points[None], scales=torch.full((1, n, 3), 0.03), rotations=torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4),
                     opacities=torch.full((1, n), 0.99), colors=torch.full((1, n, 3), 0.5))


def test_novel_cameras_lie_midway_at_25_degrees():
    scene = grid_scene(Embedded4DConfig(resolution=16), 3)
    _, novel = novel_cameras(scene.extrinsics, size=16)
    centre = lambda e: -(e[:, :3, :3].transpose(1, 2) @ e[:, :3, 3:]).squeeze(-1)
    grid, new = centre(scene.extrinsics).double(), centre(novel).double()
    torch.testing.assert_close(torch.asin(new[:, 2] / new.norm(dim=-1)), torch.full((4,), math.radians(25.0), dtype=torch.float64))
    azimuth = lambda c: torch.atan2(c[:, 1], c[:, 0])
    for i in range(4):
        a, b, m = azimuth(grid)[i], azimuth(grid)[(i + 1) % 4], azimuth(new)[i]
        gap = torch.remainder(b - a, 2 * math.pi)
        assert abs(float(torch.remainder(m - a, 2 * math.pi) - gap / 2)) < 1e-5
        assert 0 < gap < math.pi  # consecutive grid views, roughly 90° apart


def test_novel_cameras_of_an_arc_stay_beside_it():
    """Views 30° apart: novel cameras midway between neighbours, the last 15° past the arc's end."""
    scene = grid_scene(Embedded4DConfig(resolution=16, view_step_deg=30.0), 3)
    _, novel = novel_cameras(scene.extrinsics, size=16)
    centre = lambda e: -(e[:, :3, :3].transpose(1, 2) @ e[:, :3, 3:]).squeeze(-1)
    azimuth = lambda e: torch.atan2(centre(e)[:, 1], centre(e)[:, 0]).double()
    grid, new = azimuth(scene.extrinsics), azimuth(novel)
    offsets = torch.rad2deg(torch.remainder(new - grid, 2 * math.pi))
    steps = torch.rad2deg(torch.remainder(grid[1:] - grid[:-1], 2 * math.pi))
    torch.testing.assert_close(offsets[:3], steps / 2, atol=1e-3, rtol=0)  # degrees, float32 cameras
    torch.testing.assert_close(offsets[3], steps.median() / 2, atol=1e-3, rtol=0)


def test_carving_the_true_silhouettes_recovers_the_solid():
    s = sphere()
    voxels = voxel_centres(24, -1.0, 1.0)
    k, e = geometry_cameras(size=32)
    out = render([s], k, e, height=32, width=32)
    occupancy = carve(out.alpha, out.depth, k, e, voxels)
    truth = s.contains(voxels.reshape(-1, 3)).reshape(24, 24, 24)
    assert float(volume_iou(occupancy[None], truth[None])[0]) > 0.85
    shifted = torch.roll(truth, shifts=4, dims=0)
    assert float(volume_iou(occupancy[None], shifted[None])[0]) < 0.6


def test_geometry_scores_of_gaussians_on_the_true_surface():
    """Gaussians sampled on the analytic sphere score near-perfect geometry; the same Gaussians moved
    by 0.3 score clearly worse (Chamfer up by about the shift, IoU down)."""
    s = sphere()
    voxels = voxel_centres(32, -1.6, 1.6)
    truth = true_geometry([s], voxels=voxels)
    good = geometry_scores(sphere_gaussians(s), truth, voxels, RasterConfig(background=(1.0, 1.0, 1.0)))
    bad = geometry_scores(sphere_gaussians(s, shift=(0.3, 0, 0)), truth, voxels, RasterConfig(background=(1.0, 1.0, 1.0)))
    assert good["chamfer"] < 0.06 and good["iou"] > 0.45, good  # 3DGS blur: silhouettes ~1 px wider at 32 px
    assert bad["chamfer"] > good["chamfer"] + 0.08 and bad["iou"] < good["iou"] - 0.15, bad


def test_tiny_recon_run(tmp_path):
    run_dir = tmp_path / "run"
    _, metrics = run_metrics(*TINY_RECON, "trainer.steps=2", run_dir=run_dir, data_root=tmp_path / "data")
    scores = metrics["eval"]["grid->novel"]
    assert set(scores) == {"trained", "untrained", "per_scene_fit", "nearest_view"}
    for name in ("trained", "per_scene_fit"):
        assert {"psnr", "ssim", "chamfer", "iou", "psnr_ci95"} <= set(scores[name])
        assert 0 <= scores[name]["iou"] <= 1
    for name in ("untrained", "nearest_view"):
        assert "chamfer" not in scores[name] and "psnr_minus_trained" in scores[name]
    for name in ("novel_views.png", "samples.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG"


def test_model_recon_runs_task_recon_and_needs_a_grid_dataset():
    import pytest

    from seqrender.experiments.config import ConfigError
    from seqrender.experiments.tasks import task_for
    from test_tasks import config

    assert task_for(config("model=recon", "dataset=embedded4d", tiny=[])).name == "recon"
    with pytest.raises(ConfigError, match="model 'recon' needs a view × time"):
        config("model=recon", tiny=[])


def test_depth_starts_at_depth_init():
    """The recon model's depth head starts near `depth_init` (the embedded cameras' distance), not at exp(0) = 1."""
    from seqrender.models.reconstruction import ReconModelConfig, build_recon

    torch.manual_seed(0)
    images = torch.rand(1, 2, 2, 3, 16, 16)
    for depth_init, expected in ((3.5, 3.5), (0.0, 1.0)):
        out = build_recon(ReconModelConfig(depth=2, head_layers=(0, 1), embed_dim=16, num_heads=2, depth_init=depth_init))(images)
        assert abs(float(out.depth.log().median()) - math.log(expected)) < 0.5
