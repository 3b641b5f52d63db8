"""Training with accelerate. The run's task (`seqrender.experiments.tasks`) supplies the batches and
the loss (rectified-flow velocity loss on the generated part only: Kaleido's target views,
4Real-Video-V2's unknown grid cells).

Each step draws its global batch from the task's `draw` (a pure function of seed, step and sample
index); each process takes its slice. The loss is averaged per sample over its target
tokens, then over samples, so DDP's gradient average over equal slices equals one process with the
whole batch. AdamW (or Muon, `.optim`) + linear warmup + cosine decay, gradient clipping, an EMA of the weights (used
for evaluation), atomic checkpoints every `trainer.checkpoint_every` steps and a resume from the
newest usable one (`seqrender.experiments.resume`). `stop_requested()` is polled once per step: when
true the run checkpoints and returns status "preempted" (SLURM requeue, Ctrl-C). A step whose loss or
gradient norm is not finite makes no update; more than `trainer.max_nonfinite_steps` of them stop
training with RunError (the last good checkpoint is left as it is).
"""
from __future__ import annotations

import copy
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from seqrender.experiments.accumulation import accumulate_gradients, micro_batches
from seqrender.experiments.activation_checkpointing import checkpoint_blocks
from seqrender.experiments.checkpoint import latest_checkpoint, save_checkpoint
from seqrender.experiments import cluster
from seqrender.experiments.config import RunConfig, TrainerConfig
from seqrender.experiments.failures import RunError
from seqrender.experiments.init_from import init_from
from seqrender.experiments.latent import with_latents
from seqrender.experiments.optim import build_optimizer
from seqrender.experiments.resume import flat_config, resume, set_aside
from seqrender.experiments.precision import ACCELERATE_PRECISION, enable_cpu_fp16, probe_max_activations
from seqrender.experiments import sharding
from seqrender.experiments.tasks import task_for
from seqrender.experiments.throughput import FlopCount, start_meter
from seqrender.experiments.tracking import Tracking, step_figures


@dataclass
class TrainResult:
    status: str                      # "finished", "preempted" or "paused" (reached `stop_at`)
    step: int                        # optimiser steps done
    seconds: float                   # training wall time, summed over resumed segments
    losses: list[float] = field(default_factory=list)  # global-batch loss per step
    checkpoint: Path | None = None


def build_model(cfg: RunConfig) -> nn.Module:
    """The model of `cfg`'s task, with its initial weights a function of `cfg.seed` only."""
    return task_for(cfg).build_model(cfg)


def make_accelerator(trainer: TrainerConfig) -> Accelerator:
    """Export the torch.distributed environment of a SLURM task (if any), then start accelerate with
    `trainer.precision` (seqrender.experiments.precision) and `trainer.sharding` (.sharding)."""
    cluster.export_distributed_env()
    # DDP compares a gradient's strides with its bucket's even on size-1 dims (the attention registers,
    # (1, Hkv, d)): harmless, one copy of a few floats, but it prints a 4-line warning per rank.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return enable_cpu_fp16(sharding.make_accelerator(trainer.sharding, cpu=trainer.cpu,
                                                     mixed_precision=ACCELERATE_PRECISION[trainer.precision]))


def lr_lambda(trainer: TrainerConfig) -> Callable[[int], float]:
    """Linear warmup over `warmup_steps`, then cosine from 1 down to `min_lr_ratio`."""
    def factor(step: int) -> float:
        if step < trainer.warmup_steps:
            return (step + 1) / trainer.warmup_steps
        span = max(1, trainer.steps - trainer.warmup_steps)
        progress = min(1.0, (step - trainer.warmup_steps) / span)
        return trainer.min_lr_ratio + (1 - trainer.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train(cfg: RunConfig, scenes, *, run_dir: Path,
          stop_requested: Callable[[], bool] | None = None, stop_at: int | None = None,
          tracker: Tracking | None = None) -> tuple[TrainResult, nn.Module]:
    """Train (resuming from `<run_dir>/checkpoints` if present) up to `trainer.steps`, or only up to
    step `stop_at` (checkpointed; status "paused"; the schedule still spans `trainer.steps`).
    `scenes` is the task's training data (`task_for(cfg).load(cfg, "train")`). Every
    `trainer.log_every` steps the step log's figures also go to `tracker` (.tracking). Returns the result and the EMA model.
    Inside, a stop signal waits for the checkpoint (`cluster.training`); after it, it acts at once."""
    with cluster.training():
        return _train(cfg, scenes, run_dir=run_dir, stop_requested=stop_requested, stop_at=stop_at, tracker=tracker)


def _train(cfg: RunConfig, scenes, *, run_dir: Path, stop_requested: Callable[[], bool] | None,
           stop_at: int | None, tracker: Tracking | None) -> tuple[TrainResult, nn.Module]:
    tc = cfg.trainer
    accelerator = make_accelerator(tc)
    model = build_model(cfg)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    if tc.activation_checkpointing:
        checkpoint_blocks(model)
    if tc.compile:
        model.compile(backend=tc.compile_backend)  # in place: same module, same state-dict keys (checkpoints, EMA)
    ddp_ranks = dist.group.WORLD if accelerator.num_processes > 1 and not sharding.is_sharded(accelerator) else None
    optimizer = build_optimizer(model, name=tc.optimizer, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay,
                                process_group=ddp_ranks)   # Muon: the DDP ranks share Newton–Schulz
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc))
    ckpt_root = run_dir / "checkpoints"
    config = flat_config(cfg)
    state = _resume(ckpt_root, accelerator, config=config, model=model, ema=ema, scheduler=scheduler)
    if not state and tc.init_from:
        print(f"initial weights (trainer.init_from): {init_from(tc.init_from, model, ema)}", flush=True)
    model, optimizer = sharding.prepare(accelerator, model, optimizer)
    if state:
        sharding.load_optimizer_state(optimizer, state["optimizer"])
    if state and accelerator.scaler is not None and state.get("scaler") is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    step = state.get("step", 0)
    if tracker is not None:
        tracker.start(purge_from=step + 1)  # steps after the checkpoint are logged again
    losses: list[float] = state.get("losses", [])
    skipped_steps = state.get("nonfinite_steps", 0)
    started = time.perf_counter() - state.get("seconds", 0.0)   # so elapsed() sums resumed segments
    task = task_for(cfg)
    draw, loss_fn = task.batches(cfg, scenes, cfg.sampler.build()), task.loss
    slice_size = _slice_size(tc.batch_size, accelerator.num_processes)
    rank = accelerator.process_index
    if hasattr(draw, "start"):  # streamed data (streaming.StreamingDraw): prefetch this segment's batches
        draw.start(step, min(stop_at or tc.steps, tc.steps),
                   micro_batches(range(rank * slice_size, (rank + 1) * slice_size), tc.grad_accum))
    draw = with_latents(draw, cfg, accelerator.device, scenes)  # VAE latents when cfg.vae.enabled
    ema_shards = sharding.ShardedEMA(ema, model, accelerator.device)  # sharded like the weights under FSDP

    def elapsed() -> float:
        return time.perf_counter() - started

    def checkpoint() -> Path:
        accelerator.wait_for_everyone()
        path = ckpt_root / f"step_{step:08d}"
        weights, optimizer_state, ema_full = (sharding.full_weights(accelerator.unwrap_model(model)),  # collective
                                              sharding.full_optimizer_state(optimizer), ema_shards.gather())
        if accelerator.is_main_process:
            save_checkpoint(ckpt_root, step, model=weights, ema=ema_full, keep=tc.keep_checkpoints,
                            state=_state(step, optimizer_state, scheduler, accelerator, losses, elapsed(), cfg,
                                         skipped_steps), config=config)
        accelerator.wait_for_everyone()
        return path

    if stop_at is not None and step >= stop_at:
        return TrainResult("paused", step, elapsed(), losses, latest_checkpoint(ckpt_root)), ema
    bar = tqdm(total=tc.steps, initial=step, desc="train", disable=not (tc.progress and accelerator.is_main_process),
               dynamic_ncols=True)
    model.train()
    meter = None  # throughput, started after this segment's first step (FLOPs counted at step 0)
    grad_norms: list[float] = []  # since the last log step
    while step < tc.steps:
        if _any_rank(accelerator, stop_requested):
            path = checkpoint()
            print(f"stopped at step {step} on a signal; checkpoint {path}", flush=True)
            return TrainResult("preempted", step, elapsed(), losses, path), ema
        logging = (step + 1) % tc.log_every == 0
        with (probe_max_activations(accelerator.unwrap_model(model), active=logging) as probe,
              FlopCount(step == 0 and not tc.compile) as flops):
            loss = accumulate_gradients(accelerator, model, loss_fn, draw, step,
                                        range(rank * slice_size, (rank + 1) * slice_size), tc.grad_accum)
        losses.append(float(accelerator.reduce(loss.detach(), reduction="mean")))  # same on every rank
        updated, grad_norm = _optimizer_step(accelerator, model, optimizer, finite=math.isfinite(losses[-1]), tc=tc)
        grad_norms.append(grad_norm)
        if updated:
            ema_shards.update(model, decay=0.0 if step < tc.ema_start else tc.ema_decay)
        else:
            skipped_steps += 1
            _check_divergence(step, losses[-1], skipped_steps, tc.max_nonfinite_steps, ckpt_root)
        scheduler.step()
        if meter is None:
            meter = start_meter(accelerator.unwrap_model(model), draw, step, batch_size=tc.batch_size,
                                processes=accelerator.num_processes, counted_flops=flops.total,
                                record=run_dir / "throughput.json", save=accelerator.is_main_process)
        else:
            meter.step()
        step += 1
        bar.update(1)
        if step % tc.log_every == 0:
            _log(bar, step, tc.steps, np.mean(losses[-tc.log_every:]), scheduler.get_last_lr()[0],
                 quiet=not accelerator.is_main_process, max_act=probe.maxima, rates=meter.rates(),
                 grad_norm=_finite_mean(grad_norms), tracker=tracker)
            grad_norms.clear()
        if step % tc.checkpoint_every == 0 or step == tc.steps or step == stop_at:
            checkpoint()
        if step == stop_at and step < tc.steps:
            bar.close()
            return TrainResult("paused", step, elapsed(), losses, latest_checkpoint(ckpt_root)), ema
    bar.close()
    return TrainResult("finished", step, elapsed(), losses, latest_checkpoint(ckpt_root)), ema


def _optimizer_step(accelerator: Accelerator, model: nn.Module, optimizer, *, finite: bool,
                    tc: TrainerConfig) -> tuple[bool, float]:
    """Clip and step on the accumulated gradients. Returns (updated, gradient norm before clipping);
    no update when the loss or the gradient norm is not finite (the norm is NaN when the loss was not).
    Gradients are cleared either way."""
    norm = float("nan")
    if finite:
        total = accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
        norm = sharding.grad_norm_value(total)
        finite = total is None or math.isfinite(norm)
        if finite:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return finite, norm


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _check_divergence(step: int, loss: float, skipped: int, tolerated: int, ckpt_root: Path) -> None:
    """RunError once more than `tolerated` steps had a non-finite loss or gradient."""
    print(f"step {step + 1}: non-finite loss or gradient (loss {loss}); update skipped ({skipped} so far, "
          f"trainer.max_nonfinite_steps={tolerated})", flush=True)
    if skipped > tolerated:
        good = latest_checkpoint(ckpt_root)
        raise RunError(f"training stopped at step {step + 1}: non-finite loss or gradient on {skipped} steps, more "
                       f"than trainer.max_nonfinite_steps={tolerated}; last good checkpoint: "
                       f"{good or 'none'} (lower trainer.lr or raise trainer.max_nonfinite_steps)")


def _log(bar, step: int, steps: int, loss: float, lr: float, *, quiet: bool, max_act: list[float] = (),
         rates: dict[str, float] | None = None, grad_norm: float = float("nan"),
         tracker: Tracking | None = None) -> None:
    """Loss, lr, gradient norm, the largest per-block max |activation| (with its block index) and
    throughput on the progress bar, or as a plain line when the bar is off (logs, SLURM); all of them
    to `tracker` too."""
    if tracker is not None:
        tracker.log(step_figures(loss, lr, grad_norm, list(max_act), rates or {}), step)
    figures = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "grad_norm": f"{grad_norm:.4g}"}
    if max_act:
        figures["max_act"] = f"{max(max_act):.4g}@block{max_act.index(max(max_act))}"
    figures.update({k: f"{v:.4g}" for k, v in (rates or {}).items()})
    if bar.disable and not quiet:
        print(f"step {step}/{steps} " + " ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    bar.set_postfix(**figures)


def _slice_size(batch_size: int, processes: int) -> int:
    if batch_size % processes:
        raise ValueError(f"trainer.batch_size={batch_size} must be divisible by the {processes} processes")
    return batch_size // processes


def _any_rank(accelerator: Accelerator, stop_requested: Callable[[], bool] | None) -> bool:
    """True on every rank as soon as any rank's `stop_requested()` is true."""
    flag = torch.tensor(float(bool(stop_requested and stop_requested())), device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="sum")
    return bool(flag > 0)


def _state(step, optimizer_state, scheduler, accelerator, losses, seconds, cfg: RunConfig, nonfinite_steps: int) -> dict:
    return {
        "step": step,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "data": {"seed": cfg.seed, "samples_seen": step * cfg.trainer.batch_size},
        "losses": list(losses),
        "seconds": seconds,
        "nonfinite_steps": nonfinite_steps,
    }


def _resume(root: Path, accelerator: Accelerator, *, config: dict, model, ema, scheduler) -> dict:
    """Load the newest usable checkpoint under `root` into the objects ({} if there is none); the main
    process then moves refused newer checkpoints aside (seqrender.experiments.resume). The optimiser
    state is loaded after `prepare` (sharded like the weights under FSDP)."""
    state, skipped = resume(root, model=model, ema=ema, config=config)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        set_aside(skipped)
    if not state:
        return {}
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state
