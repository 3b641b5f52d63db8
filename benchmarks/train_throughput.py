"""Training throughput of the main job's model (config.yaml + preset kaleido: pixel-space Kaleido,
4 blocks, hidden 128, GTA; samples of 8 views at 32×32) on this CPU, float32.

One training step = the real loop's pieces: batch drawn by `batching.make_train_batch` from random
scenes, `tasks.kaleido_views.flow_loss` forward + backward through `accumulation.accumulate_gradients`, gradient
clipping and the optimiser step (the main job's `trainer.optimizer`, Muon; AdamW in a comparison row).
Model FLOPs per step are counted with FlopCounterMode (matmuls + attention);
useful GFLOP/s ÷ this CPU's float32 matmul GFLOP/s measured in the same run is the utilisation.
Rows: batch sizes (the main job uses 2: one sample per DDP rank) and, for batch 4, 1 thread (the
main job's DDP ranks run 1 thread each), with Muon and with AdamW; last, batch 2 again in a fresh
process with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep at once), beside the first row's
OpenMP default. `--quick`: one row (batch 4), fewer steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from _common import matmul_gflops, parse_args, report
from seqrender.experiments.accumulation import accumulate_gradients
from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.cli import before_compose
from seqrender.experiments.config import validate_config
from seqrender.experiments.optim import build_optimizer
from seqrender.experiments.throughput import FlopCount, tokens_per_sample
from seqrender.experiments.tasks import task_for
from seqrender.experiments.train import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def main_job_config(batch_size: int):
    before_compose([])
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"trainer.batch_size={batch_size}"])
    return validate_config(OmegaConf.to_container(cfg, resolve=True))


def random_scenes(cfg, count: int = 16) -> SceneTensors:
    """Random scenes at the dataset's resolution with orbit-like cameras (content does not matter)."""
    gen = torch.Generator().manual_seed(0)
    res, views = cfg.dataset.config.resolution, 16
    intrinsics = torch.tensor([[res, 0.0, res / 2], [0.0, res, res / 2], [0.0, 0.0, 1.0]]).expand(count, views, 3, 3)
    extrinsics = torch.eye(4).repeat(count, views, 1, 1)
    extrinsics[..., :3, 3] = torch.randn(count, views, 3, generator=gen)
    return SceneTensors(torch.rand(count, views, 3, res, res, generator=gen), intrinsics.clone(), extrinsics)


def measure(batch_size: int, steps: int, optimizer_name: str | None = None) -> dict:
    """Median step time, FLOPs per step and tokens per sample of the main job's training step
    (with `optimizer_name` instead of the main job's optimiser if given)."""
    cfg = main_job_config(batch_size)
    tc = cfg.trainer
    model = build_model(cfg).train()
    optimizer = build_optimizer(model, name=optimizer_name or tc.optimizer, lr=tc.lr, weight_decay=tc.weight_decay,
                                betas=tc.betas)
    accelerator = Accelerator(cpu=True)
    task = task_for(cfg)
    draw, loss_fn = task.batches(cfg, random_scenes(cfg), cfg.sampler.build()), task.loss

    def step(i: int, count_flops: bool = False) -> int:
        with FlopCount(count_flops) as flops:
            accumulate_gradients(accelerator, model, loss_fn, draw, i, range(batch_size), 1)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return flops.total

    flops = step(0, count_flops=True)
    times = []
    for i in range(1, steps + 1):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    tokens = tokens_per_sample(draw(0, range(1)).x.shape, cfg.model.config.patch_size)
    return {"seconds": seconds, "flops": flops, "tokens": tokens, "optimizer": optimizer_name or tc.optimizer}


CHILD = "SEQRENDER_BENCH_CASE"  # set (JSON [batch, threads, optimizer, steps]): measure that one row, print it


def row_for(batch_size: int, n_threads: int, optimizer_name: str | None, steps: int) -> dict:
    torch.set_num_threads(n_threads)
    rate = matmul_gflops()
    m = measure(batch_size, steps, optimizer_name)
    useful = m["flops"] / m["seconds"] / 1e9
    return {
        "batch": batch_size, "threads": n_threads, "optimizer": m["optimizer"],
        "OpenMP wait": os.environ.get("OMP_WAIT_POLICY", "default"), "step s": m["seconds"],
        "samples/s": batch_size / m["seconds"], "tokens/s": batch_size * m["tokens"] / m["seconds"],
        "GFLOP/step": m["flops"] / 1e9, "useful GFLOP/s": useful, "matmul GFLOP/s": rate,
        "utilisation": useful / rate,
    }


def row_in_child(case: tuple, steps: int, **env: str) -> dict:
    """row_for(*case, steps) in a fresh process with `env` added: OpenMP reads its wait policy once, at start."""
    out = subprocess.run([sys.executable, __file__], env={**os.environ, **env, CHILD: json.dumps([*case, steps])},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    warnings.simplefilter("ignore")
    if CHILD in os.environ:
        print(json.dumps(row_for(*json.loads(os.environ[CHILD]))))
        return
    args = parse_args(__doc__.splitlines()[0])
    steps = 3 if args.quick else 10
    threads = torch.get_num_threads()
    cases = [(4, threads, None)] if args.quick else [(2, threads, None), (4, threads, None), (8, threads, None),
                                                      (4, 1, None), (4, 1, "adamw")]
    rows = [row_for(*case, steps) for case in cases]
    torch.set_num_threads(threads)
    if not args.quick and threads > 1:   # the policy the entry scripts forced until 2026-12-04 (README)
        rows.append(row_in_child((2, threads, None), steps, OMP_WAIT_POLICY="PASSIVE"))
    one_thread = {r["optimizer"]: r["step s"] for r in rows if r["batch"] == 4 and r["threads"] == 1}
    extra = {"muon_step_over_adamw_step": one_thread["muon"] / one_thread["adamw"]} if len(one_thread) == 2 else {}
    report("Main-job training step (Kaleido, pixel space, CPU float32)", rows, json_path=args.json,
           model="main job: 4 blocks, hidden 128, 4/2 heads, GTA, 8 views of 32x32, 4x4 patches (64 tokens/view)",
           goal="utilisation >= 0.5", omp_threads=os.environ.get("OMP_NUM_THREADS", "default"), **extra)


if __name__ == "__main__":
    main()
