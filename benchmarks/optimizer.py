"""The main job's optimiser step on its two DDP ranks (gloo, 1 thread each, CPU float32): AdamW,
Muon with every rank orthogonalising every matrix, and Muon with the ranks sharing the
Newton–Schulz work (`MuonAdamW(process_group=...)`, what the main job runs), each with the
Newton–Schulz iteration in its direct form and in the form `optim.orthogonalise` picks per shape
(the Gram form for wide matrices; "auto").

The model is the main job's (config.yaml + preset kaleido); the gradients are random and the same on
both ranks, as after DDP's all-reduce. Times are medians over round-robin repeats, taken on rank 0
(rank 1 does the same). "NS GFLOP/rank" counts this rank's Newton–Schulz matmuls
(`optim.newton_schulz_flops`); "NS GFLOP/s" divides them by the step time over the AdamW step (the
rest of the step is the AdamW part on the other parameters), against this CPU's 1-thread float32
matmul rate measured in the same run. `--quick`: fewer repeats.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _common import interleaved_medians, matmul_gflops, parse_args, report
from seqrender.experiments.local_launch import free_port
from seqrender.experiments.optim import build_optimizer, hidden_matrices, newton_schulz_flops, split_by_cost
from seqrender.experiments.train import build_model
from train_throughput import main_job_config


FORMS = ("direct", "auto")


def _rank(rank: int, port: int, repeats: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = main_job_config(8)
        tc = cfg.trainer
        model = build_model(cfg).train()
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen) * 1e-3
        kw = dict(lr=tc.lr, weight_decay=tc.weight_decay, betas=tc.betas)
        optimizers = {"adamw": build_optimizer(model, name="adamw", **kw)}
        for form in FORMS:
            optimizers[f"muon, each rank all, {form}"] = build_optimizer(model, name="muon", ns_form=form, **kw)
            optimizers[f"muon, ranks share, {form}"] = build_optimizer(
                model, name="muon", process_group=dist.group.WORLD, ns_form=form, **kw)
        def synced(step):          # both ranks start each timed step together, as after DDP's all-reduce
            return lambda: (dist.barrier(), step())
        times = interleaved_medians({name: synced(opt.step) for name, opt in optimizers.items()}, repeats)
        if rank == 0:
            shapes = [tuple(p.shape) for p in hidden_matrices(model)]
            owner = split_by_cost(shapes, 2)
            flops = {"adamw": 0}
            for form in FORMS:
                flops[f"muon, each rank all, {form}"] = sum(newton_schulz_flops(s, form=form) for s in shapes)
                flops[f"muon, ranks share, {form}"] = sum(newton_schulz_flops(s, form=form)
                                                         for s, r in zip(shapes, owner) if r == 0)
            torch.save({"times": times, "rate": matmul_gflops(), "ns_flops": flops, "matrices": len(shapes)}, out)
    finally:
        dist.destroy_process_group()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(_rank, args=(port, 5 if args.quick else 30, out), nprocs=2)
        r = torch.load(out)
    times, adamw = r["times"], r["times"]["adamw"]
    ns_flops = r["ns_flops"]
    rows = []
    for name, seconds in times.items():
        ns_seconds = seconds - adamw
        ns_rate = ns_flops[name] / ns_seconds / 1e9 if ns_flops[name] and ns_seconds > 0 else None
        rows.append({"optimiser step": name, "ms": seconds * 1e3, "over adamw": seconds / adamw,
                     "NS GFLOP/rank": ns_flops[name] / 1e9, "NS GFLOP/s": ns_rate,
                     "NS / matmul rate": ns_rate / r["rate"] if ns_rate else None})
    report("Main-job optimiser step on two DDP ranks (CPU float32, 1 thread per rank)", rows, json_path=args.json,
           model=f"main job: {r['matrices']} Muon matrices in 4 blocks, hidden 128",
           matmul_gflops_1_thread=r["rate"],
           shared_over_each_rank_all=times["muon, ranks share, auto"] / times["muon, each rank all, auto"],
           auto_over_direct_shared=times["muon, ranks share, auto"] / times["muon, ranks share, direct"])


if __name__ == "__main__":
    main()
