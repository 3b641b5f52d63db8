"""Cost of positional encodings around SDPA attention, forward + backward, Kaleido-Small heads.

Rows: no encoding, 2D RoPE (Kaleido "rope"), CaPE and GTA (3D poses on the temporal sequence),
and Plücker-as-input (RoPE attention plus the per-token ray map). Sequences: temporal window
attention (12 views × a 4×4 window = 192 tokens, several windows batched) and spatial attention
(a 32×32 latent = 1024 tokens). q, k, v are strided views of a (B, N, heads, d) projection, as in a
layer ("core": q, k, v given; "layer": with the q/kv/out projections of a Kaleido-Small layer,
hidden 1024). Useful FLOPs count the 6 attention matmuls of forward + backward, 12·B·Hq·N²·d,
plus 3× the projections' forward FLOPs for "layer". Each time is the best of the rounds, all
variants timed round-robin (the CPU is shared, so best-of is the least noisy statistic); the
"_1t" columns repeat the run on one torch thread measuring that thread's CPU time, which time
spent descheduled by other processes does not inflate.
"""

from __future__ import annotations

import itertools
import time

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from _common import matmul_gflops, parse_args, report, time_interleaved
from seqrender.posenc import grid_angles, make_scene_encoding, plucker_rays, random_se3

HQ, HKV, D, HIDDEN, VIEWS, WINDOW, LATENT = 16, 4, 64, 1024, 12, 4, 32
KINDS = ("none", "rope", "cape", "gta", "plucker")


def positions(sequence: str, batch: int):
    """(hw, extrinsics) as the attention sees them: (N, 2) for spatial; (B', N', 2), (B', V, 4, 4)
    for temporal windows (grouped as in the model: each view's pose covers the window's K² tokens)."""
    hw = grid_angles(LATENT, LATENT)
    if sequence == "spatial":
        return hw, None
    window = repeat(hw[: WINDOW * WINDOW], "k c -> b (v k) c", b=batch, v=VIEWS)
    return window, random_se3(batch, VIEWS, generator=torch.Generator().manual_seed(0))


def ray_map(sequence: str, batch: int):
    """The input-side work of Plücker: the ray map of every frame's tokens in the batch."""
    k = torch.tensor([[float(LATENT), 0.0, LATENT / 2], [0.0, float(LATENT), LATENT / 2], [0.0, 0.0, 1.0]])
    views, size = (VIEWS, WINDOW) if sequence == "temporal" else (1, LATENT)
    ext = random_se3(batch, views, generator=torch.Generator().manual_seed(1))
    return lambda: plucker_rays(k.expand(batch, views, 3, 3), ext, size, size, relative=True)


def step(kind: str, sequence: str, batch: int, scope: str):
    """One forward + backward of transform → SDPA (GQA) → inverse transform; returns (fn, FLOPs).

    ``scope="core"``: q, k, v are given; ``"layer"``: they come from (and the output goes through)
    the q/kv/out projections of a Kaleido-Small attention layer (hidden 1024).
    """
    n = VIEWS * WINDOW * WINDOW if sequence == "temporal" else LATENT * LATENT
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, n, HIDDEN, generator=gen, requires_grad=True)
    qkv_proj = torch.nn.Linear(HIDDEN, (HQ + 2 * HKV) * D, bias=False)
    out_proj = torch.nn.Linear(HQ * D, HIDDEN, bias=False)
    leaves = [torch.randn(batch, n, h, D, generator=gen, requires_grad=True) for h in (HQ, HKV, HKV)]
    enc = make_scene_encoding(kind, D)
    hw, ext = positions(sequence, batch)
    rays = ray_map(sequence, batch) if kind == "plucker" else None

    def heads():
        if scope == "core":
            return [leaf.transpose(1, 2) for leaf in leaves]
        qkv = rearrange(qkv_proj(x), "b n (h d) -> b h n d", d=D)
        return qkv.split([HQ, HKV, HKV], dim=1)

    def run():
        for t in [x, *leaves, *qkv_proj.parameters(), *out_proj.parameters()]:
            t.grad = None
        if rays is not None:
            rays()
        transform = enc.spatial(hw) if sequence == "spatial" else enc.temporal(hw, ext, None)
        q, k, v = transform.transform_qkv(*heads())
        out = transform.transform_out(F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        if scope == "layer":
            out = out_proj(rearrange(out, "b h n d -> b n (h d)"))
        out.square().mean().backward()

    attention = 12 * batch * HQ * n * n * D
    projections = 6 * batch * n * HIDDEN * (2 * HQ + 2 * HKV) * D if scope == "layer" else 0
    return run, attention + projections


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    repeats = 5 if args.quick else 9
    batches = {"temporal": 2 if args.quick else 8, "spatial": 1 if args.quick else 2}
    size = 1024 if args.quick else 2048
    rate = matmul_gflops(size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rate_1t = matmul_gflops(size)
    torch.set_num_threads(threads)
    rows = []
    for (sequence, batch), scope in itertools.product(batches.items(), ("core", "layer")):
        steps = {kind: step(kind, sequence, batch, scope) for kind in KINDS}
        fns = [fn for fn, _ in steps.values()]
        times = dict(zip(KINDS, time_interleaved(fns, repeats=repeats)))
        torch.set_num_threads(1)
        cpu = dict(zip(KINDS, time_interleaved(fns, repeats=repeats, clock=time.thread_time)))
        torch.set_num_threads(threads)
        for kind, (_, flops) in steps.items():
            rows.append({
                "sequence": sequence, "scope": scope, "batch": batch, "encoding": kind,
                "ms": 1e3 * times[kind], "x_none": times[kind] / times["none"],
                "x_rope": times[kind] / times["rope"], "GFLOP/s": flops / times[kind] / 1e9,
                "cpu_ms_1t": 1e3 * cpu[kind], "x_rope_1t": cpu[kind] / cpu["rope"],
                "GFLOP/s_1t": flops / cpu[kind] / 1e9,
            })
    report(
        "posenc: attention forward+backward (SDPA, 16 q / 4 kv heads, d = 64)", rows, json_path=args.json,
        matmul_gflops=rate, threads=threads, matmul_gflops_1t=rate_1t, quick=args.quick,
    )


if __name__ == "__main__":
    main()
