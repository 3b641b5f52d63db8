"""Whole-model cost on this CPU: Kaleido per positional encoding and 4Real-Video-V2 per view-time
attention pattern, forward+backward, float32. FLOPs are counted by torch's FlopCounterMode (matmuls
and attention) on the same call (for the fused pattern: the decomposed backend's count, i.e. only
unmasked pairs). The cases of a table are timed round-robin and each keeps its fastest round, so
load changes on a shared machine hit all cases alike; ratios are against the table's first row.

    python benchmarks/models.py [--quick] [--json PATH]
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import matmul_gflops, parse_args, report, time_fn
from seqrender.models import FourReal, FourRealConfig, Kaleido, KaleidoConfig


def fwd_bwd(model, inputs: dict):
    def step():
        model.zero_grad(set_to_none=True)
        model(**inputs).square().mean().backward()
    return step


def flops(step) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def measure(cases: list[tuple[str, object, dict, float | None]], repeats: int, rate: float) -> list[dict]:
    """Rows for cases (name, model, inputs, useful FLOPs or None = counted), timed round-robin."""
    steps = [fwd_bwd(model, inputs) for _, model, inputs, _ in cases]
    for step in steps:
        step()  # warm-up
    best = [float("inf")] * len(steps)
    for _ in range(repeats):
        for i, step in enumerate(steps):
            best[i] = min(best[i], time_fn(step, warmup=0, repeats=1))
    rows = []
    for (name, _, _, useful), step, seconds in zip(cases, steps, best):
        gflops = (useful or flops(step)) / seconds / 1e9
        rows.append({"model": name, "fwd+bwd s": seconds, "ratio": seconds / best[0],
                     "GFLOP/s": gflops, "% matmul": 100 * gflops / rate})
    return rows


def random_cameras(batch: int, views: int, gen: torch.Generator) -> torch.Tensor:
    """(B, V, 4, 4) world-to-camera: random rotations (QR of Gaussians) and translations."""
    rot, _ = torch.linalg.qr(torch.randn(batch, views, 3, 3, generator=gen))
    cams = torch.eye(4).repeat(batch, views, 1, 1)
    cams[..., :3, :3] = rot * torch.det(rot)[..., None, None]
    cams[..., :3, 3] = torch.randn(batch, views, 3, generator=gen)
    return cams


def kaleido_cases(quick: bool) -> list:
    views, side = (4, 16) if quick else (8, 32)  # latent side; tokens side/2
    cfg = KaleidoConfig(layers=2, hidden=128, heads=4, kv_heads=1, window=4, in_channels=16)
    gen = torch.Generator().manual_seed(0)
    k = torch.tensor([[side, 0.0, side / 2], [0, side, side / 2], [0, 0, 1]])
    inputs = dict(z=torch.randn(2, views, 16, side, side, generator=gen), t=torch.rand(2, generator=gen),
                  is_reference=torch.arange(views).expand(2, views) < 2, intrinsics=k.expand(2, views, 3, 3),
                  extrinsics=random_cameras(2, views, gen))
    return [(f"kaleido posenc={p}", Kaleido(cfg, posenc=p), inputs, None)
            for p in ("none", "rope", "cape", "gta", "plucker")]


def fourreal_cases(quick: bool) -> list:
    grid, side = (4, 8) if quick else (8, 16)
    gen = torch.Generator().manual_seed(1)
    inputs = dict(z=torch.randn(1, grid, grid, 16, side, side, generator=gen), t=torch.rand(1, generator=gen))
    make = lambda attention, backend: FourReal(FourRealConfig(  # noqa: E731
        layers=2, hidden=128, heads=4, kv_heads=1, in_channels=16, attention=attention, backend=backend))
    # the decomposed backend computes exactly the unmasked pairs: its count is the fused pattern's useful work
    useful = flops(fwd_bwd(make("fused", "decomposed"), inputs))
    return [("fourreal fused (reference)", make("fused", "reference"), inputs, useful),
            ("fourreal fused (decomposed)", make("fused", "decomposed"), inputs, useful),
            ("fourreal sequential", make("sequential", "auto"), inputs, None),
            ("fourreal parallel", make("parallel", "auto"), inputs, None)]


def main():
    args = parse_args(__doc__.splitlines()[0])
    repeats = 3 if args.quick else 5
    rate = matmul_gflops()
    torch.manual_seed(0)
    rows = measure(kaleido_cases(args.quick), repeats, rate) + measure(fourreal_cases(args.quick), repeats, rate)
    report("seqrender.models: forward+backward, float32, this CPU", rows, json_path=args.json,
           matmul_gflops=rate, quick=args.quick, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
