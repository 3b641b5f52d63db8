"""The main job: data -> train -> evaluate -> metrics.json, samples.png, loss_curve.png."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState

from seqrender.experiments import report
from seqrender.experiments.config import RunConfig
from seqrender.experiments.eval_schedules import score_schedules
from seqrender.experiments.evaluate import sharded
from seqrender.experiments.resume import flat_config
from seqrender.experiments.tasks import task_for
from seqrender.experiments.tracking import Tracking
from seqrender.experiments.train import build_model, train


def load_split(cfg: RunConfig, split: str):
    """The task's data of `split` ("train" / "heldout"), generated first if missing."""
    return task_for(cfg).load(cfg, split)


def run_job(cfg: RunConfig, *, run_dir: Path, stop_requested: Callable[[], bool] | None = None) -> dict:
    """Train (or resume) then evaluate; returns the metrics written to `<run_dir>/metrics.json`
    ({"status": "preempted", ...} without evaluation if training was stopped). Figures also go to
    `trainer.tracker` (seqrender.experiments.tracking)."""
    tracker = Tracking(cfg.trainer.tracker, run_dir, config=flat_config(cfg), enabled=PartialState().is_main_process)
    try:
        return _run_job(cfg, run_dir=run_dir, stop_requested=stop_requested, tracker=tracker)
    finally:
        tracker.finish()


def _run_job(cfg: RunConfig, *, run_dir: Path, stop_requested: Callable[[], bool] | None, tracker: Tracking) -> dict:
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    train_scenes, heldout = load_split(cfg, "train"), load_split(cfg, "heldout")
    data_seconds = time.perf_counter() - started
    result, ema, milestones = train_with_milestones(cfg, train_scenes, heldout, run_dir=run_dir,
                                                    stop_requested=stop_requested, tracker=tracker)
    train_info = {"steps": result.step, "seconds": round(result.seconds, 2), "final_loss": _tail_mean(result.losses),
                  "status": result.status, "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                  "parameters": sum(p.numel() for p in ema.parameters()), "processes": PartialState().num_processes}
    if result.status != "finished":
        return {"train": train_info}
    main = PartialState().is_main_process
    eval_started = time.perf_counter()
    task = task_for(cfg)
    if main:
        print(f"evaluating the EMA weights of step {result.step} ({cfg.eval.num_items} held-out items each)", flush=True)
    with sharded():  # every rank scores a share of the batches; all get the gathered scores
        results, samples = task.evaluate(cfg, heldout, {"trained": ema, "untrained": build_model(cfg)},
                                         progress=cfg.trainer.progress and main)
    if not main:
        return {"train": train_info}
    _take_idle_cores()
    pictures = task.pictures(cfg, heldout, ema, run_dir)   # e.g. orbit.png and its "orbit_psnr"
    metrics = {
        "eval": results,
        "train": train_info,
        "data": {"seconds": round(data_seconds, 2), "train_scenes": len(train_scenes), "heldout_scenes": len(heldout)},
        "eval_info": {"seconds": round(time.perf_counter() - eval_started, 2), "items": cfg.eval.num_items,
                      "guidance_scale": cfg.eval.guidance_scale, "schedule": cfg.schedule.name,
                      "solver": cfg.solver.name, "num_steps": getattr(cfg.schedule.config, "num_steps", None),
                      "model": "trained = EMA weights", "intervals": "95 % bootstrap over items"},
        **pictures,
        "milestones": milestones,
        **({"schedules": score_schedules(cfg, results, lambda c: milestone_scores(c, heldout, ema))}
           if cfg.eval.schedules else {}),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    report.write_metrics(run_dir / "metrics.json", metrics)
    report.write_samples(run_dir / "samples.png", samples, rows=cfg.eval.sample_rows)
    report.write_loss_curve(run_dir / "loss_curve.png", result.losses)
    tracker.log_eval(results, result.step)
    tracker.log_images({"samples": run_dir / "samples.png", "orbit": run_dir / "orbit.png"}, result.step)
    report.print_table(results)
    print(f"trained {result.step} steps in {result.seconds:.0f} s; outputs in {run_dir}")
    return metrics


def train_with_milestones(cfg: RunConfig, train_scenes, heldout, *, run_dir: Path,
                          stop_requested: Callable[[], bool] | None = None, tracker: Tracking | None = None):
    """Train; at every step of `eval.milestones` below `trainer.steps` pause, score the EMA model with
    the evaluation sampler ("trained" rows of every setting) and record it in
    `<run_dir>/milestones.json` (kept across resumes). Returns (result, ema, {step: scores})."""
    path = run_dir / "milestones.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    for milestone in sorted(m for m in cfg.eval.milestones if m < cfg.trainer.steps):
        result, ema = train(cfg, train_scenes, run_dir=run_dir, stop_requested=stop_requested, stop_at=milestone,
                            tracker=tracker)
        if result.status != "paused":
            return result, ema, done
        if result.step == milestone and str(milestone) not in done and PartialState().is_main_process:
            done[str(milestone)] = {"train_seconds": round(result.seconds, 1), **milestone_scores(cfg, heldout, ema)}
            report.write_metrics(path, done)
            if tracker is not None:
                tracker.log_eval({k: v for k, v in done[str(milestone)].items() if k != "train_seconds"}, milestone)
            print(f"milestone {milestone}: " + ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.3f}"
                                                        for k, v in done[str(milestone)].items() if k != "train_seconds"))
    result, ema = train(cfg, train_scenes, run_dir=run_dir, stop_requested=stop_requested, tracker=tracker)
    return result, ema, done


def milestone_scores(cfg: RunConfig, heldout, ema: torch.nn.Module) -> dict:
    """{setting: {"psnr", "ssim", ..._ci95}} of the EMA model with the evaluation sampler."""
    return task_for(cfg).score_trained(cfg, heldout, ema)


def _take_idle_cores() -> None:
    """Rank 0 of a local multi-process run evaluates alone: give it the other ranks' CPU threads."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local > 1 and not torch.cuda.is_available():
        torch.set_num_threads(min(os.cpu_count() or 1, torch.get_num_threads() * local))


def _tail_mean(losses: list[float], n: int = 50) -> float | None:
    return round(sum(losses[-n:]) / len(losses[-n:]), 5) if losses else None

