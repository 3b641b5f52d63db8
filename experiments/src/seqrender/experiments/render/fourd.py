"""The render command for 4Real-Video-V2 (a checkpoint whose model is a view × time grid model):

1. input: a fixed-view video (the row: view 0 over the T time steps) and a freeze-time video (the
   column: the V views at time 0) — today those of an embedded held-out grid, `heldout:<i>`, whose
   cameras are known;
2. the generator fills the other cells of the V × T grid (its configured sampler);
   the grid is written as videos, one per view (`grid/view_<v>.mp4`) and `grid.png`;
3. with `render.recon_checkpoint` (a trained `model=recon` run), the reconstruction turns the grid
   into Gaussians per time step — written as 3DGS `.ply` files (`gaussians/time_<t>.ply`) — and
   renders them along `render.trajectory` (default orbit) while time advances, frame j showing time
   step ⌊j·T / views⌋: `frames/`, `video.mp4`, `contact_sheet.png` (per time step: the input row frame,
   the generated column, renders at the scene's K novel cameras, their ground truth);
4. `render.json`: PSNR / SSIM of the renders against the procedural ground truth at the same cameras
   and times, and the same for Gaussians reconstructed from the true grid (no generator) to separate
   the two stages' errors.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from seqrender.experiments.config import RunConfig
from seqrender.experiments.data.cameras import scale_intrinsics
from seqrender.experiments.data.dynamic import BACKGROUND, Embedded4DConfig, grid_scene
from seqrender.experiments.data.dynamic_views import novel_cameras
from seqrender.experiments.data.renderer import render as ray_cast
from seqrender.experiments.data.seeding import generator_from
from seqrender.experiments.grid import given_cells
from seqrender.experiments.grid_eval import GridEvalBatch, grid_model_method
from seqrender.experiments.render import RenderError, outputs
from seqrender.experiments.render.checkpoints import load_weights, trained_config, weights_file
from seqrender.experiments.render.config import guidance_scale
from seqrender.experiments.render.trajectories import make_trajectory
from seqrender.experiments.tasks import task_for
from seqrender.recon.metrics import psnr, ssim
from seqrender.recon.ply import write_ply
from seqrender.recon.rasterizer import Gaussians, render_gaussians

Z_UP = torch.tensor([0.0, 0.0, 1.0])


def load_trained(checkpoint: str, field: str, layout_model: str | None = None) -> tuple[RunConfig, torch.nn.Module]:
    """(run config, EMA model) of a run dir / checkpoint; RenderError naming `field` otherwise."""
    weights = weights_file(Path(checkpoint))
    cfg = trained_config(weights)
    if cfg is None:
        raise RenderError(f"{field}: {checkpoint}: no .hydra/config.yaml beside the weights; give the run dir")
    if layout_model is not None and cfg.model.name != layout_model:
        raise RenderError(f"{field}: {checkpoint} is a {cfg.model.name!r} model; expected {layout_model!r}")
    model = task_for(cfg).build_model(cfg)
    load_weights(model, weights, f"model {cfg.model.name!r}")
    return cfg, model.eval()


def heldout_grid(source: str, cfg: RunConfig) -> tuple[int, Tensor, Tensor, Tensor]:
    """`heldout:<i>` -> (scene index in the dataset, images (V, T, 3, H, W), intrinsics (V, 3, 3),
    extrinsics (V, 4, 4)) of the generator's embedded 4D dataset."""
    config = cfg.dataset.config
    if not isinstance(config, Embedded4DConfig):
        raise RenderError(f"render.scene: {source} needs a checkpoint trained on dataset 'embedded4d'")
    try:
        index = int(source.split(":", 1)[1]) if source.startswith("heldout:") else -1
        if not 0 <= index < config.heldout_scenes:
            raise ValueError
    except ValueError:
        raise RenderError(f"render.scene: {source}: a view × time model renders held-out grids heldout:0 .. "
                          f"heldout:{config.heldout_scenes - 1}") from None
    grids = cfg.dataset.build(split="heldout", progress=False)
    return (config.num_scenes - config.heldout_scenes + index, grids.images[index], grids.intrinsics[index],
            grids.extrinsics[index])


def fill_grid(model: torch.nn.Module, cfg: RunConfig, images: Tensor, *, seed: int) -> Tensor:
    """Keep the first row and column of images (V, T, 3, H, W) and generate the other cells."""
    given = given_cells(*images.shape[:2])
    noise = torch.randn(images.shape, generator=generator_from(seed, 0, 1))
    batch = GridEvalBatch(images=images[None], is_reference=given[None], noise=noise[None])
    with torch.no_grad():
        out = grid_model_method(model, cfg)(batch)[0].clamp(0, 1)
    return torch.where(given[:, :, None, None, None], images, out)


def reconstruct(model: torch.nn.Module, cfg: RunConfig, grid: Tensor, intrinsics: Tensor,
                extrinsics: Tensor) -> list[Gaussians]:
    """grid (V, T, 3, H, W), cameras (V, ...) -> Gaussians (batch 1) per time step, the grid resized
    (area) to the reconstruction's training resolution first."""
    size = cfg.dataset.config.resolution
    v, t, _, h, w = grid.shape
    small = F.interpolate(grid.flatten(0, 1), size=(size, size), mode="area").unflatten(0, (v, t))
    k = scale_intrinsics(intrinsics, scale_x=size / w, scale_y=size / h)
    with torch.no_grad():
        recon = model(small[None], intrinsics=k[None, :, None].expand(1, v, t, 3, 3),
                      extrinsics=extrinsics[None, :, None].expand(1, v, t, 4, 4))
    g = recon.gaussians
    return [Gaussians(*(getattr(g, f)[i:i + 1] for f in ("means", "scales", "rotations", "opacities", "colors")))
            for i in range(t)]


def render_views(gaussians: Gaussians, intrinsics: Tensor, extrinsics: Tensor, *, size: int, raster) -> Tensor:
    """Gaussians (batch 1) at cameras (N, ...) -> (N, 3, size, size)."""
    return render_gaussians(gaussians, extrinsics[None], intrinsics[None], height=size, width=size,
                            config=raster).color[0].clamp(0, 1)


def frame_times(frames: int, times: int) -> list[int]:
    """Time step shown by each trajectory frame: time advances evenly over the trajectory."""
    return [min(times - 1, j * times // frames) for j in range(frames)]


def run_fourd(run: RunConfig, render, gen_weights_dir: str, folder: Path) -> dict:
    """The 4D render into `folder`; returns the metrics written to render.json."""
    started = time.perf_counter()
    gen_cfg, generator = load_trained(gen_weights_dir, "render.checkpoint")
    gen_cfg = gen_cfg.model_copy(update={"schedule": run.schedule, "solver": run.solver,
                                         "eval": run.eval.model_copy(update={"guidance_scale": guidance_scale(render, gen_cfg)})})
    index, truth_grid, intrinsics, extrinsics = heldout_grid(render.scene, gen_cfg)
    grid = fill_grid(generator, gen_cfg, truth_grid, seed=render.seed)
    unknown = ~given_cells(*grid.shape[:2])
    metrics = {"scene": render.scene, "checkpoint": gen_weights_dir, "grid": grid_scores(grid, truth_grid, unknown)}
    write_grid(folder, grid, render.fps)
    if render.recon_checkpoint:
        metrics |= render_4d(folder, render, gen_cfg.dataset.config, index, grid, truth_grid, intrinsics, extrinsics)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    outputs.write_json(folder / "render.json", metrics)
    return metrics


def grid_scores(grid: Tensor, truth: Tensor, unknown: Tensor) -> dict:
    return {"psnr": float(psnr(grid[unknown], truth[unknown]).mean()),
            "ssim": float(ssim(grid[unknown], truth[unknown]).mean()), "cells": int(unknown.sum())}


def write_grid(folder: Path, grid: Tensor, fps: int) -> None:
    """grid.png (rows: views, columns: time) and one video per view."""
    outputs.write_rows(folder / "grid.png", [[row] for row in grid], title="generated grid: rows = views, columns = time")
    (folder / "grid").mkdir(parents=True, exist_ok=True)
    for v, row in enumerate(grid):
        outputs.write_mp4(folder / "grid" / f"view_{v}.mp4", row, fps=max(1, fps // 2))


def render_4d(folder: Path, render, config: Embedded4DConfig, index: int, grid: Tensor, truth_grid: Tensor,
              intrinsics: Tensor, extrinsics: Tensor) -> dict:
    """Gaussians per time step from the generated (and, for reference, the true) grid; .ply files,
    the trajectory video and the contact sheet. Returns their metrics."""
    recon_cfg, recon = load_trained(render.recon_checkpoint, "render.recon_checkpoint", "recon")
    raster, size, times = recon.config.raster, grid.shape[-1], grid.shape[1]
    gaussians = reconstruct(recon, recon_cfg, grid, intrinsics, extrinsics)
    oracle = reconstruct(recon, recon_cfg, truth_grid, intrinsics, extrinsics)
    (folder / "gaussians").mkdir(parents=True, exist_ok=True)
    for t, g in enumerate(gaussians):
        write_ply(folder / "gaussians" / f"time_{t}.ply", g)
    path = make_trajectory(render.trajectory, extrinsics, render.views, up=Z_UP,
                           spiral_amplitude_deg=render.spiral_amplitude_deg)
    k_path = intrinsics[:1].expand(len(path), 3, 3)
    shown = frame_times(len(path), times)
    scene = grid_scene(config, index)
    truth_at = lambda t, k, e: ray_cast(scene.at(t), k, e, height=size, width=size,
                                        supersample=config.supersample).composite(BACKGROUND).clamp(0, 1)
    frames = torch.cat([render_views(gaussians[t], k_path[j:j + 1], path[j:j + 1], size=size, raster=raster)
                        for j, t in enumerate(shown)])
    truth = torch.cat([truth_at(t, k_path[j:j + 1], path[j:j + 1]) for j, t in enumerate(shown)])
    novel_k, novel_e = novel_cameras(extrinsics, size=size)
    novel = [render_views(g, novel_k, novel_e, size=size, raster=raster) for g in gaussians]
    novel_oracle = [render_views(g, novel_k, novel_e, size=size, raster=raster) for g in oracle]
    novel_truth = [truth_at(t, novel_k, novel_e) for t in range(times)]
    outputs.write_frames(folder / "frames", frames)
    if render.mp4:
        outputs.write_mp4(folder / "video.mp4", frames, fps=render.fps)
    if render.gif:
        outputs.write_gif(folder / "video.gif", frames, fps=render.fps)
    outputs.write_rows(folder / "contact_sheet.png",
                       [[grid[:1, t], grid[:, t], novel[t], novel_truth[t]] for t in range(times)],
                       title="per time: input row frame | generated column | novel-view renders | truth")
    score = lambda pred, true: {"psnr": float(psnr(pred, true).mean()), "ssim": float(ssim(pred, true).mean())}
    cat = torch.cat
    return {"recon_checkpoint": render.recon_checkpoint, "trajectory": render.trajectory, "views": len(path),
            "trajectory_vs_truth": score(frames, truth), "novel_views_vs_truth": score(cat(novel), cat(novel_truth)),
            "novel_views_from_true_grid_vs_truth": score(cat(novel_oracle), cat(novel_truth)),
            "gaussians_per_time_step": int(gaussians[0].means.shape[1])}
