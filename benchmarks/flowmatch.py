"""Sampling error vs number of function evaluations (NFE) for every schedule × solver, exact field.

Data: the 1-D Gaussian mixture 0.3·N(−2, 0.3²) + 0.7·N(1.5, 0.5²), whose rectified-flow velocity is
known in closed form (seqrender.flowmatch.GaussianMixture1D), so every error is the solver's and the
schedule's alone. Noise at the N probability midpoints ε_i = Φ⁻¹((i + ½)/N) is integrated in float32;
W1 = mean_i |x_(i) − F⁻¹((i + ½)/N)| is the 1-D Wasserstein distance to the true distribution (up to
an O(1/N) quadrature term). The summary answers "how many NFEs does each schedule need for a given
W1?" (log-log interpolation between measured step counts). A second table times classifier-free
guidance with the two passes batched into one call against two separate calls (small MLP field).
"""

from __future__ import annotations

import json
import math

import torch
from torch import nn

from _common import interleaved_medians, matmul_gflops, parse_args, report
from seqrender.flowmatch import EVALUATIONS_PER_STEP, GaussianMixture1D, make_schedule, sample

MIX = GaussianMixture1D((0.3, 0.7), (-2.0, 1.5), (0.3, 0.5))
SCHEDULES = {
    "linspace": dict(name="linspace"),
    "trailing": dict(name="trailing"),
    "linear_quadratic": dict(name="linear_quadratic"),
    "linspace+shift3": dict(name="linspace", shift=3.0),
}
TARGETS = (0.1, 0.03, 0.01, 0.003)


def wasserstein(schedule: dict, solver: str, steps: int, num_points: int) -> float:
    """W1 between the solver's push-forward of N(0, 1) and the mixture (quantile quadrature)."""
    u = (torch.arange(num_points, dtype=torch.float64) + 0.5) / num_points
    noise = torch.special.ndtri(u).float()
    spec = dict(schedule)
    x = sample(MIX.velocity, noise, make_schedule(spec.pop("name"), steps, **spec), solver=solver)
    return (x.double().sort().values - MIX.quantile(u)).abs().mean().item()


def nfe_for(target: float, curve: list[tuple[int, float]]) -> float | None:
    """Smallest NFE with W1 <= target, interpolating log W1 linearly in log NFE between measurements."""
    for (n0, e0), (n1, e1) in zip(curve, curve[1:]):
        if e0 <= target:
            return float(n0)
        if e1 <= target:
            frac = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            return math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0)))
    return float(curve[0][0]) if curve and curve[0][1] <= target else None


def accuracy(step_counts: list[int], num_points: int) -> tuple[list[dict], list[dict]]:
    rows, summary = [], []
    for label, schedule in SCHEDULES.items():
        for solver in ("euler", "heun"):
            curve = []
            for steps in step_counts:
                nfe = steps * EVALUATIONS_PER_STEP[solver]
                w1 = wasserstein(schedule, solver, steps, num_points)
                curve.append((nfe, w1))
                rows.append({"schedule": label, "solver": solver, "steps": steps, "NFE": nfe, "W1": w1})
            need = {f"NFE@W1<={t:g}": nfe_for(t, curve) for t in TARGETS}
            summary.append({"schedule": label, "solver": solver, **{k: "—" if v is None else round(v) for k, v in need.items()}})
    return rows, summary


class MLPField(nn.Module):
    """A conditional velocity MLP on (B, N, C) tokens: cond/uncond via a learned null embedding."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels + 1, hidden), nn.SiLU(), nn.Linear(hidden, channels))
        self.null = nn.Parameter(torch.randn(channels))

    def forward(self, z, t, *, drop_condition):
        z = torch.where(drop_condition[:, None, None], z + self.null, z)
        tt = t[:, None, None].expand(*z.shape[:2], 1)
        return self.net(torch.cat([z, tt], dim=-1))

    def flops(self, tokens: int) -> int:
        first, last = self.net[0], self.net[2]
        return 2 * tokens * (first.in_features * first.out_features + last.in_features * last.out_features)


def guidance_timing(batch: int, tokens: int, steps: int, repeats: int) -> list[dict]:
    """Batched CFG (one call of 2B rows) vs two calls of B rows per evaluation, Euler, scale 1.5."""
    model = MLPField(64, 512).eval()
    noise = torch.randn(batch, tokens, 64)
    ts = make_schedule("linear_quadratic", steps)

    def separate(z, t, *, drop_condition):
        cond = model(z, t, drop_condition=torch.zeros_like(drop_condition))
        uncond = model(z, t, drop_condition=torch.ones_like(drop_condition))
        return uncond + 1.5 * (cond - uncond)

    variants = {
        "batched 2B": lambda: sample(model, noise, ts, guidance_scale=1.5),
        "two calls of B": lambda: sample(separate, noise, ts),
    }
    flops = 2 * steps * model.flops(batch * tokens)
    with torch.no_grad():
        times = interleaved_medians(variants, repeats)
    base = times["two calls of B"]
    return [
        {"tokens": f"{batch}×{tokens}", "variant": name, "ms": 1e3 * s, "speedup_vs_two_calls": base / s,
         "MLP_GFLOP/s": flops / s / 1e9}
        for name, s in times.items()
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    step_counts = [1, 2, 4, 8, 16, 32, 64] if args.quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    num_points = 2000 if args.quick else 20000
    rate = matmul_gflops(1024 if args.quick else 2048)
    rows, summary = accuracy(step_counts, num_points)
    repeats = 5 if args.quick else 15
    timing = guidance_timing(1, 64, 8, repeats) + guidance_timing(4, 256, 8, repeats)
    meta = dict(matmul_gflops=rate, threads=torch.get_num_threads(), quick=args.quick, num_points=num_points)
    report("flowmatch: W1 to the Gaussian mixture vs NFE", rows, **meta)
    report("flowmatch: NFE needed for a given W1 (log-log interpolated)", summary)
    report("flowmatch: classifier-free guidance, 8 Euler steps, MLP 64→512→64", timing, matmul_gflops=rate)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tables = {"w1_vs_nfe": rows, "nfe_for_error": summary, "guidance_timing": timing}
        args.json.write_text(json.dumps({**meta, **tables}, indent=2))


if __name__ == "__main__":
    main()
