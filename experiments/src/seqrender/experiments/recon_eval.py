"""Held-out evaluation of reconstruction in the setting "grid->novel": each held-out scene's whole
V × T grid (known cameras) is given; the K novel cameras of every time step are rendered and scored.

Per item (= held-out scene), averaged over its K·T novel cells / T time steps:
- psnr, ssim of the renders at the novel cameras (composited on white, like the data);
- chamfer: symmetric Chamfer distance (`metrics.chamfer_distance`, world units) between the surface
  seen from the 18 scoring cameras (`dynamic_views.geometry_cameras`, 32 × 32 pixels) — for the truth the analytic
  ray caster's depth, for a method its Gaussians' rendered depth (pixels with alpha > 0.5), both
  unprojected;
- iou: volumetric IoU on a VOXELS³ grid over [−EXTENT, EXTENT]³ between the true occupancy (inside
  test of the primitives) and the method's space carving (a voxel is occupied when, in all 18
  scoring views, it projects inside the rendered silhouette and at most one voxel in front of the
  rendered depth).

Methods: the trained EMA and the untrained init (`FeedForwardReconstructor`; images only for the
init, to save time); `per_scene_fit`
(`seqrender.recon.fit`: Gaussians optimised on the V grid views of each time step, same rasteriser,
`eval.baseline_iterations` Adam steps); `nearest_view` (copy the grid view of the same time step
whose camera centre is nearest the novel camera; no geometry).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqrender.experiments.data.dynamic_views import ReconScenes, SceneGeometry, scene_geometry
from seqrender.experiments.batching import to_device
from seqrender.experiments.evaluate import camera_centres, device_of, summarise
from seqrender.experiments.tasks.recon import reconstruct, render_novel
from seqrender.recon.fit import FitConfig, fit_gaussians
from seqrender.recon.geometry import project_points, unproject_depth
from seqrender.recon.metrics import chamfer_distance, psnr, ssim, volume_iou, voxel_centres
from seqrender.recon.rasterizer import Gaussians, RasterConfig, render_gaussians

SETTING = "grid->novel"
VOXELS = 32
EXTENT = 1.6
SILHOUETTE = 0.5
GEOMETRY_OF = ("trained", "per_scene_fit")  # methods whose geometry is scored (the untrained init's is not)


def slice_gaussians(g: Gaussians, index: int) -> Gaussians:
    """Batch element `index` of `g`, keeping the batch axis."""
    return Gaussians(*(getattr(g, k)[index:index + 1] for k in ("means", "scales", "rotations", "opacities", "colors")))


def rendered_surface(gaussians: Gaussians, geometry: SceneGeometry, raster: RasterConfig) -> tuple[Tensor, Tensor]:
    """Gaussians (batch 1) seen from the scoring cameras -> alpha (C, H, W), mean depth (C, H, W)."""
    size = geometry.size
    out = render_gaussians(gaussians, geometry.extrinsics[None], geometry.intrinsics[None], height=size, width=size,
                           config=raster)
    alpha = out.alpha[0, :, 0]
    return alpha, out.depth[0, :, 0] / alpha.clamp_min(1e-6)


def carve(alpha: Tensor, depth: Tensor, intrinsics: Tensor, extrinsics: Tensor, voxels: Tensor) -> Tensor:
    """Space carving: alpha, depth (C, H, W) of C cameras, voxels (R, R, R, 3) (a cubic grid) ->
    occupancy (R, R, R) bool. A voxel survives a view when its centre projects on a covered pixel and
    lies no more than one voxel spacing in front of that pixel's depth."""
    spacing = float((voxels[1, 0, 0] - voxels[0, 0, 0]).norm())
    c, h, w = alpha.shape
    flat = voxels.reshape(1, -1, 3).expand(c, -1, -1)
    uv, z = project_points(flat, intrinsics, extrinsics)                        # (C, N, 2), (C, N)
    col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (z > 0)
    pixel = row.clamp(0, h - 1) * w + col.clamp(0, w - 1)
    a = alpha.reshape(c, -1).gather(1, pixel)
    d = depth.reshape(c, -1).gather(1, pixel)
    occupied = inside & (a > SILHOUETTE) & (z >= d - spacing)
    return occupied.all(dim=0).reshape(voxels.shape[:-1])


def geometry_scores(gaussians: Gaussians, geometry: SceneGeometry, voxels: Tensor, raster: RasterConfig) -> dict:
    """{"chamfer", "iou"} of one time step's Gaussians (batch 1) against the truth; chamfer is NaN
    when no pixel of any scoring view is covered."""
    alpha, depth = rendered_surface(gaussians, geometry, raster)
    points = unproject_depth(depth, geometry.intrinsics, geometry.extrinsics)[alpha > SILHOUETTE]
    chamfer = (float(chamfer_distance(points[None], geometry.points[None])[0]) if len(points) else float("nan"))
    occupancy = carve(alpha, depth, geometry.intrinsics, geometry.extrinsics, voxels)
    return {"chamfer": chamfer, "iou": float(volume_iou(occupancy[None], geometry.occupancy[None])[0])}


def image_scores(pred: Tensor, truth: Tensor) -> dict:
    """pred, truth (..., 3, H, W) -> {"psnr", "ssim"} means over the images."""
    flat = lambda x: x.reshape(-1, *x.shape[-3:])
    return {"psnr": float(psnr(flat(pred), flat(truth)).mean()), "ssim": float(ssim(flat(pred), flat(truth)).mean())}


def nearest_view(scene: ReconScenes) -> Tensor:
    """Scenes (1): for each novel camera the grid view nearest in camera centre, at every time -> (1, K, T, 3, H, W)."""
    nearest = torch.cdist(camera_centres(scene.novel_extrinsics), camera_centres(scene.extrinsics)).argmin(-1)  # (1, K)
    return scene.images[:, nearest[0]]


class Scorer:
    """Scores methods on held-out scenes: their truth geometry is computed once per (scene, time)."""

    def __init__(self, cfg, heldout: ReconScenes, raster: RasterConfig):
        self.cfg, self.heldout, self.raster = cfg, heldout, raster
        self.voxels = voxel_centres(VOXELS, -EXTENT, EXTENT)
        self.times = heldout.images.shape[2]
        self._geometry: dict[tuple[int, int], SceneGeometry] = {}

    def items(self) -> range:
        return range(min(self.cfg.eval.num_items, len(self.heldout)))

    def geometry(self, item: int, time: int) -> SceneGeometry:
        key = (item, time)
        if key not in self._geometry:
            self._geometry[key] = scene_geometry(self.cfg.dataset.config, int(self.heldout.indices[item]), time,
                                                 voxels=self.voxels)
        return self._geometry[key]

    def score(self, item: int, renders: Tensor, gaussians: list[Gaussians] | None) -> dict:
        """renders (K, T, 3, H, W) at the novel cameras; gaussians: one (batch 1) per time step, or None."""
        scores = image_scores(renders, self.heldout.novel_images[item])
        if gaussians is not None:
            per_time = [geometry_scores(g, self.geometry(item, t), self.voxels, self.raster) for t, g in enumerate(gaussians)]
            scores |= {k: float(np.mean([s[k] for s in per_time])) for k in ("chamfer", "iou")}
        return scores


def model_outputs(model: nn.Module, scene: ReconScenes) -> tuple[Tensor, list[Gaussians]]:
    """One scene (batch 1) -> renders (K, T, 3, H, W) at its novel cameras, Gaussians per time step;
    computed on the model's device (a GPU), returned on the scene's (where they are scored)."""
    home, device = scene.images.device, device_of(model)
    with torch.no_grad():
        scene = scene if device is None else scene.to(device)
        recon = reconstruct(model, scene)
        out = render_novel(model, recon, scene)
    gaussians = to_device(recon.gaussians, home)
    return out.color[0].clamp(0, 1).to(home), [slice_gaussians(gaussians, t) for t in range(scene.images.shape[2])]


def fit_outputs(scene: ReconScenes, fit: FitConfig, raster: RasterConfig) -> tuple[Tensor, list[Gaussians]]:
    """Per-scene optimisation on the grid views of each time step -> renders (K, T, 3, H, W), Gaussians."""
    t, h, w = scene.images.shape[2], *scene.images.shape[-2:]
    fitted = [fit_gaussians(scene.images[0, :, i], scene.intrinsics[0], scene.extrinsics[0], config=fit, raster=raster)[0]
              for i in range(t)]
    renders = [render_gaussians(g, scene.novel_extrinsics, scene.novel_intrinsics, height=h, width=w, config=raster).color[0]
               for g in fitted]
    return torch.stack(renders, dim=1).clamp(0, 1), fitted


def evaluate_recon(cfg, heldout: ReconScenes, models: dict[str, nn.Module], *, progress: bool = True):
    """({SETTING: {method: scores with 95 % intervals}}, {SETTING: (batches, predictions)} of "trained")."""
    trained = models["trained"]
    raster = trained.config.raster
    scorer = Scorer(cfg, heldout, raster)
    fit = FitConfig(iterations=cfg.eval.baseline_iterations, seed=cfg.eval.seed)
    per_item: dict[str, list[dict]] = {name: [] for name in [*models, "per_scene_fit", "nearest_view"]}
    shown = []
    for item in tqdm(scorer.items(), desc=f"eval {SETTING}", disable=not progress):
        scene = heldout.take(torch.tensor([item]))
        for name, model in models.items():
            renders, gaussians = model_outputs(model.eval(), scene)
            per_item[name].append(scorer.score(item, renders, gaussians if name in GEOMETRY_OF else None))
            if name == "trained":
                shown.append(renders)
        with torch.enable_grad():
            renders, gaussians = fit_outputs(scene, fit, raster)
        per_item["per_scene_fit"].append(scorer.score(item, renders, gaussians))
        per_item["nearest_view"].append(scorer.score(item, nearest_view(scene)[0], None))
    arrays = {name: {k: np.array([s[k] for s in rows]) for k in rows[0]} for name, rows in per_item.items()}
    results = {SETTING: summarise(arrays, samples=cfg.eval.bootstrap_samples)}
    return results, {SETTING: sample_rows(heldout, shown)}


def sample_rows(heldout: ReconScenes, renders: list[Tensor]):
    """samples.png rows (report.write_samples): per item, the last time step's grid views as
    references, its novel views as ground truth and the trained renders as prediction."""
    batches, preds = [], []
    for item, pred in enumerate(renders):
        given, truth = heldout.images[item, :, -1], heldout.novel_images[item, :, -1]
        images = torch.cat([given, truth])[None]
        is_reference = (torch.arange(len(images[0])) < len(given))[None]
        batches.append(SimpleNamespace(images=images, is_reference=is_reference))
        preds.append(torch.cat([given, pred[:, -1]])[None])
    return batches, preds


def write_novel_views(path, cfg, heldout: ReconScenes, ema: nn.Module, *, scenes: int = 2) -> None:
    """PNG: per held-out scene, rows over time of [grid views | true novel views | rendered novel views]."""
    from seqrender.experiments.render.outputs import write_rows

    rows = []
    for item in range(min(scenes, len(heldout))):
        scene = heldout.take(torch.tensor([item]))
        renders, _ = model_outputs(ema.eval(), scene)
        for t in range(scene.images.shape[2]):
            rows.append([scene.images[0, :, t], scene.novel_images[0, :, t], renders[:, t]])
    write_rows(path, rows, title="grid views (input) | novel views: truth | reconstruction, one row per time step")


__all__ = ["SETTING", "carve", "evaluate_recon", "geometry_scores", "nearest_view", "write_novel_views"]
