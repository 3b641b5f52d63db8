"""The render command (`python experiments/render.py`): checkpoint + scene + trajectory -> frames,
video, contact sheet and render.json in the output folder."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqrender.experiments.config import RunConfig
from seqrender.experiments.evaluate import model_method
from seqrender.experiments.layouts import model_layout
from seqrender.experiments.render import RenderError, outputs
from seqrender.experiments.render.checkpoints import load_weights, trained_config, weights_file
from seqrender.experiments.render.config import RenderConfig, guidance_scale, validate_render
from seqrender.experiments.render.generate import generate
from seqrender.experiments.render.inputs import Scene, load_scene
from seqrender.experiments.render.trajectories import make_trajectory
from seqrender.experiments.train import build_model
from seqrender.recon.metrics import psnr, ssim


def sampling_config(run: RunConfig, trained: RunConfig | None, render: RenderConfig) -> RunConfig:
    """The checkpoint's model/posenc/dataset/trainer (when its run dir says) with this command's
    schedule, solver and guidance (`guidance_scale`)."""
    base = trained or run
    eval_cfg = run.eval.model_copy(update={"guidance_scale": guidance_scale(render, base)})
    return base.model_copy(update={"schedule": run.schedule, "solver": run.solver, "eval": eval_cfg})


def load_model(cfg: RunConfig, weights: Path) -> torch.nn.Module:
    if model_layout(cfg.model.name) != "multiview":
        raise RenderError(f"render.checkpoint: {weights} is a {cfg.model.name!r} (view x time grid) model; "
                          f"render needs a multi-view model such as 'kaleido'")
    model = build_model(cfg)
    fields = {k: getattr(cfg.model.config, k) for k in ("layers", "hidden", "heads", "patch_size")}
    load_weights(model, weights, f"model {cfg.model.name!r} ({', '.join(f'{k}={v}' for k, v in fields.items())}, "
                                 f"posenc={cfg.posenc.name})")
    return model.eval()


def render_scene(cfg: RunConfig, render: RenderConfig, model: torch.nn.Module, scene: Scene) -> dict:
    """Generate the trajectory's views of `scene`; returns the tensors and the metrics."""
    extrinsics = make_trajectory(render.trajectory, scene.views.extrinsics, render.views, up=scene.up,
                                 spiral_amplitude_deg=render.spiral_amplitude_deg)
    intrinsics = scene.views.intrinsics[:1].expand(len(extrinsics), 3, 3).clone()
    noise = torch.randn((len(extrinsics), *scene.views.images.shape[1:]),
                        generator=torch.Generator().manual_seed(render.seed))
    started = time.perf_counter()
    frames = generate(model_method(model, cfg), scene.views, intrinsics, extrinsics, noise,
                      budget=render.view_budget or cfg.trainer.views, chunk_size=render.chunk_size,
                      max_references=render.max_references, progress=render.progress)
    result = {"frames": frames, "intrinsics": intrinsics, "extrinsics": extrinsics, "truth": None,
              "metrics": {"seconds": round(time.perf_counter() - started, 2), "views": len(frames),
                          "references": len(scene.views)}}
    if scene.truth is not None:
        truth = scene.truth(intrinsics, extrinsics)
        result["truth"] = truth
        result["metrics"] |= {"psnr": float(psnr(frames, truth).mean()), "ssim": float(ssim(frames, truth).mean())}
    return result


def write_outputs(folder: Path, render: RenderConfig, scene: Scene, result: dict) -> None:
    frames = result["frames"]
    outputs.write_frames(folder / "frames", frames)
    if render.mp4:
        outputs.write_mp4(folder / "video.mp4", frames, fps=render.fps)
    if render.gif:
        outputs.write_gif(folder / "video.gif", frames, fps=render.fps)
    outputs.write_contact_sheet(folder / "contact_sheet.png", scene.views.images, frames, truth=result["truth"])
    outputs.write_json(folder / "cameras.json", {"intrinsics": result["intrinsics"].tolist(),
                                                 "extrinsics": result["extrinsics"].tolist(),
                                                 "inputs": {"intrinsics": scene.views.intrinsics.tolist(),
                                                            "extrinsics": scene.views.extrinsics.tolist()}})


def run_grid_render(run: RunConfig, render: RenderConfig, folder: Path) -> dict:
    """A view × time (4Real-Video-V2) checkpoint: the generated grid, and with a reconstruction
    checkpoint Gaussians per time step, .ply files and a video (render/fourd.py)."""
    from seqrender.experiments.render.fourd import run_fourd

    metrics = run_fourd(run, render, render.checkpoint, folder)
    recon = metrics.get("novel_views_vs_truth")
    score = f"; novel views PSNR {recon['psnr']:.2f} dB / SSIM {recon['ssim']:.3f} vs ground truth" if recon else ""
    print(f"generated the {metrics['grid']['cells']} unknown cells of {render.scene} (PSNR {metrics['grid']['psnr']:.2f} dB)"
          f"{score}; outputs in {folder}")
    return metrics


def run_render(raw: DictConfig, *, run_dir: Path) -> dict:
    """The whole command; RenderError / ConfigError for user errors (one line each)."""
    run, render = validate_render(OmegaConf.to_container(raw, resolve=True))
    if run.threads:
        torch.set_num_threads(run.threads)
    if not render.checkpoint:
        raise RenderError("render.checkpoint: required: a run dir (with checkpoints/), a step_* checkpoint dir, "
                          "or an ema .safetensors file")
    weights = weights_file(Path(render.checkpoint))
    cfg = sampling_config(run, trained_config(weights), render)
    folder = Path(render.out) if render.out else run_dir
    folder.mkdir(parents=True, exist_ok=True)
    if model_layout(cfg.model.name) == "grid":
        return run_grid_render(run, render, folder)
    model = load_model(cfg, weights)
    scene = load_scene(render.scene, cfg, references=render.references, split=render.split, workdir=folder / "sfm")
    result = render_scene(cfg, render, model, scene)
    write_outputs(folder, render, scene, result)
    metrics = {**result["metrics"], "scene": scene.name, "checkpoint": str(weights),
               "trajectory": render.trajectory, "schedule": cfg.schedule.name,
               "num_steps": cfg.schedule.config.num_steps, "guidance_scale": cfg.eval.guidance_scale,
               "chunk_size": render.chunk_size, "max_references": render.max_references,
               "view_budget": render.view_budget or cfg.trainer.views}
    outputs.write_json(folder / "render.json", metrics)
    score = f", PSNR {metrics['psnr']:.2f} dB / SSIM {metrics['ssim']:.3f} vs ground truth" if "psnr" in metrics else ""
    print(f"rendered {len(result['frames'])} views of {scene.name} from {len(scene.views)} references{score}; "
          f"outputs in {folder}")
    return metrics
