"""Cost of positional encodings around SDPA attention, forward + backward, Kaleido-Small heads.

Rows: no encoding, 2D RoPE (Kaleido "rope"), CaPE and GTA (3D poses on the temporal sequence),
and Plücker-as-input (RoPE attention plus the per-token ray map). Sequences: temporal window
attention (12 views × a 4×4 window = 192 tokens, several windows batched) and spatial attention
(a 32×32 latent = 1024 tokens). q, k, v are strided views of a (B, N, heads, d) projection, as in a
layer. Useful FLOPs count the 6 attention matmuls of forward + backward: 12·B·Hq·N²·d.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from einops import rearrange

from _common import matmul_gflops, parse_args, report, time_fn
from seqrender.posenc import grid_angles, make_scene_encoding, plucker_rays, random_se3

HQ, HKV, D, VIEWS, WINDOW, LATENT = 16, 4, 64, 12, 4, 32
KINDS = ("none", "rope", "cape", "gta", "plucker")


def positions(sequence: str, batch: int):
    """(hw, extrinsics) as the attention sees them: (N, 2) for spatial; (B', N', 2), (B', N', 4, 4)
    per token for temporal windows (the 12 views' poses repeated over the window's K² tokens)."""
    hw = grid_angles(LATENT, LATENT)
    if sequence == "spatial":
        return hw, None
    window = rearrange(hw[: WINDOW * WINDOW], "k c -> 1 1 k c").expand(batch, VIEWS, -1, -1)
    ext = random_se3(batch, VIEWS, generator=torch.Generator().manual_seed(0))
    ext = ext[:, :, None].expand(-1, -1, WINDOW * WINDOW, -1, -1)
    flat = lambda t: rearrange(t, "b v k ... -> b (v k) ...")
    return flat(window), flat(ext)


def ray_map(sequence: str, batch: int):
    """The input-side work of Plücker: the ray map of every frame's tokens in the batch."""
    k = torch.tensor([[float(LATENT), 0.0, LATENT / 2], [0.0, float(LATENT), LATENT / 2], [0.0, 0.0, 1.0]])
    views, size = (VIEWS, WINDOW) if sequence == "temporal" else (1, LATENT)
    ext = random_se3(batch, views, generator=torch.Generator().manual_seed(1))
    return lambda: plucker_rays(k.expand(batch, views, 3, 3), ext, size, size, relative=True)


def step(kind: str, sequence: str, batch: int):
    """One forward + backward of transform → SDPA (GQA) → inverse transform; returns (fn, FLOPs)."""
    n = VIEWS * WINDOW * WINDOW if sequence == "temporal" else LATENT * LATENT
    gen = torch.Generator().manual_seed(2)
    leaves = [torch.randn(batch, n, h, D, generator=gen, requires_grad=True) for h in (HQ, HKV, HKV)]
    grad_out = torch.randn(batch, HQ, n, D, generator=gen)
    enc = make_scene_encoding(kind, D)
    hw, ext = positions(sequence, batch)
    rays = ray_map(sequence, batch) if kind == "plucker" else None

    def run():
        for leaf in leaves:
            leaf.grad = None
        if rays is not None:
            rays()
        transform = enc.spatial(hw) if sequence == "spatial" else enc.temporal(hw, ext, None)
        q, k, v = transform.transform_qkv(*(leaf.transpose(1, 2) for leaf in leaves))
        out = transform.transform_out(F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        out.backward(grad_out)

    return run, 12 * batch * HQ * n * n * D


def interleaved_best(fns: dict, repeats: int) -> dict:
    """Best time of each fn over `repeats` rounds, timed round-robin so load changes hit all alike."""
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_fn(fn, warmup=0, repeats=1))
    return {name: min(ts) for name, ts in samples.items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    repeats = 5 if args.quick else 15
    batches = {"temporal": 2 if args.quick else 8, "spatial": 1 if args.quick else 2}
    rate = matmul_gflops(1024 if args.quick else 2048)
    rows = []
    for sequence, batch in batches.items():
        steps = {kind: step(kind, sequence, batch) for kind in KINDS}
        times = interleaved_best({kind: fn for kind, (fn, _) in steps.items()}, repeats)
        for kind, (_, flops) in steps.items():
            rows.append({
                "sequence": sequence, "batch": batch, "encoding": kind, "ms": 1e3 * times[kind],
                "x_none": times[kind] / times["none"], "x_rope": times[kind] / times["rope"],
                "useful_GFLOP/s": flops / times[kind] / 1e9,
            })
    report(
        "posenc: attention forward+backward (SDPA, 16 q / 4 kv heads, d = 64)", rows, json_path=args.json,
        matmul_gflops=rate, threads=torch.get_num_threads(), quick=args.quick,
    )


if __name__ == "__main__":
    main()
