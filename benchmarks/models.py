"""Whole-model cost on this CPU: Kaleido per positional encoding and 4Real-Video-V2 per view-time
attention pattern, forward+backward, float32. FLOPs are counted by torch's FlopCounterMode (matmuls
and attention) on the same call (for the fused pattern: the decomposed backend's count, i.e. only
unmasked pairs); ratios are against the first row of each model, same run.

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


def measure(name: str, model, inputs: dict, repeats: int, baseline: float | None, rate: float,
            useful: float | None = None) -> dict:
    """One row; `useful` overrides the counted FLOPs (e.g. to not credit masked-out pairs)."""
    step = fwd_bwd(model, inputs)
    seconds = time_fn(step, warmup=1, repeats=repeats)
    gflops = (useful or flops(step)) / seconds / 1e9
    return {"model": name, "fwd+bwd s": seconds, "ratio": seconds / (baseline or seconds),
            "GFLOP/s": gflops, "% matmul": 100 * gflops / rate}


def random_cameras(batch: int, views: int, gen: torch.Generator) -> torch.Tensor:
    """(B, V, 4, 4) world-to-camera: random rotations (QR of Gaussians) and translations."""
    rot, _ = torch.linalg.qr(torch.randn(batch, views, 3, 3, generator=gen))
    cams = torch.eye(4).repeat(batch, views, 1, 1)
    cams[..., :3, :3] = rot * torch.det(rot)[..., None, None]
    cams[..., :3, 3] = torch.randn(batch, views, 3, generator=gen)
    return cams


def kaleido_rows(quick: bool, repeats: int, rate: float) -> list[dict]:
    views, side = (4, 16) if quick else (8, 32)  # latent side; tokens side/2
    cfg = KaleidoConfig(layers=2, hidden=128, heads=4, kv_heads=1, window=4, in_channels=16)
    gen = torch.Generator().manual_seed(0)
    inputs = dict(z=torch.randn(2, views, 16, side, side, generator=gen), t=torch.rand(2, generator=gen),
                  is_reference=torch.arange(views).expand(2, views) < 2,
                  intrinsics=torch.tensor([[side, 0.0, side / 2], [0, side, side / 2], [0, 0, 1]]).expand(2, views, 3, 3),
                  extrinsics=random_cameras(2, views, gen))
    rows, baseline = [], None
    for posenc in ("none", "rope", "cape", "gta", "plucker"):
        torch.manual_seed(0)
        row = measure(f"kaleido posenc={posenc}", Kaleido(cfg, posenc=posenc), inputs, repeats, baseline, rate)
        baseline = baseline or row["fwd+bwd s"]
        rows.append(row)
    return rows


def fourreal_rows(quick: bool, repeats: int, rate: float) -> list[dict]:
    grid, side = (4, 8) if quick else (8, 16)
    gen = torch.Generator().manual_seed(1)
    inputs = dict(z=torch.randn(1, grid, grid, 16, side, side, generator=gen), t=torch.rand(1, generator=gen))
    make = lambda attention, backend: FourReal(FourRealConfig(  # noqa: E731
        layers=2, hidden=128, heads=4, kv_heads=1, in_channels=16, attention=attention, backend=backend))
    # the decomposed backend computes exactly the unmasked pairs: its count is the fused pattern's useful work
    fused_useful = flops(fwd_bwd(make("fused", "decomposed"), inputs))
    rows, baseline = [], None
    for attention, backend in (("fused", "reference"), ("fused", "decomposed"), ("sequential", "auto"),
                               ("parallel", "auto")):
        torch.manual_seed(0)
        name = f"fourreal {attention}" + (f" ({backend})" if attention == "fused" else "")
        useful = fused_useful if attention == "fused" else None
        row = measure(name, make(attention, backend), inputs, repeats, baseline, rate, useful)
        baseline = baseline or row["fwd+bwd s"]
        rows.append(row)
    return rows


def main():
    args = parse_args(__doc__.splitlines()[0])
    repeats = 2 if args.quick else 5
    rate = matmul_gflops()
    rows = kaleido_rows(args.quick, repeats, rate) + fourreal_rows(args.quick, repeats, rate)
    report("seqrender.models: forward+backward, float32, this CPU", rows, json_path=args.json,
           matmul_gflops=rate, quick=args.quick, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
