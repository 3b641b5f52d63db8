"""Fused view-time attention (4Real-Video-V2 §3.1) on this CPU: decomposed vs FlexAttention vs dense.

Shape (full): V = T = 8 frames, 8×8 tokens per frame (N = 4096), 8 q / 2 kv heads, d = 64, B = 1;
`--quick`: V = T = 4, 4×4 tokens (N = 256). Rows: dense SDPA without mask (the obvious alternative),
dense SDPA with the boolean mask, `decomposed` on the private CPU flash kernel, `decomposed` on its
public matmul-softmax path, and compiled FlexAttention (forward only: no CPU backward). Each row runs
in its own subprocess so its peak memory (ru_maxrss growth over the inputs) is its own.
Useful FLOPs count only the attended pairs: forward 4·B·Hq·d·pairs, forward + backward 3× that;
pairs = N·S·(V + T − 1) for the pattern. Ideal speed-up over unmasked dense: V·T / (V + T − 1).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import warnings

import torch
import torch.nn.functional as F

from _common import matmul_gflops, parse_args, report, time_fn
from seqrender.attention.viewtime import decomposed_viewtime, viewtime_mask
from seqrender.attention.viewtime.flex import flex_viewtime

HQ, HKV, DIM = 8, 2, 64
ROWS = {
    "dense SDPA, no mask": ("dense", True),
    "dense SDPA + bool mask": ("masked", True),
    "decomposed (flash CPU op)": ("decomposed", True),
    "decomposed (public path)": ("public", True),
    "flex (compiled)": ("flex", False),
}


def shape(quick: bool) -> tuple[int, int, int]:
    return (4, 4, 16) if quick else (8, 8, 64)


def attention_fn(kind: str, views: int, times: int, tokens: int):
    """fn(q, k, v) -> out for one row of the table."""
    if kind == "dense":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    if kind == "masked":
        mask = viewtime_mask(views, times, tokens)
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    if kind == "flex":
        return lambda q, k, v: flex_viewtime(q, k, v, views, times, compile=True)
    private = kind == "decomposed"
    return lambda q, k, v: decomposed_viewtime(q, k, v, views, times, private_ops=private)


def worker(kind: str, backward: bool, quick: bool) -> dict:
    """Time one row and measure its peak memory growth; runs inside a fresh subprocess."""
    warnings.simplefilter("ignore")
    views, times, tokens = shape(quick)
    n = views * times * tokens
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, HQ, n, DIM, generator=gen, requires_grad=backward)
    k, v = (torch.randn(1, HKV, n, DIM, generator=gen, requires_grad=backward) for _ in range(2))
    fn = attention_fn(kind, views, times, tokens)
    grad = torch.randn(1, HQ, n, DIM, generator=gen)

    def forward():
        with torch.no_grad():
            fn(q, k, v)

    def forward_backward():
        torch.autograd.grad(fn(q, k, v), (q, k, v), grad)

    step = forward_backward if backward else forward
    if kind == "flex":
        step()  # compile outside the memory measurement
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    seconds = time_fn(step, warmup=0 if kind == "flex" else 1, repeats=3 if quick else 5)
    return {"seconds": seconds, "peak_mib": peak_mib}


def run_worker(kind: str, backward: bool, quick: bool) -> dict:
    args = [sys.executable, __file__, "--worker", kind, str(int(backward)), str(int(quick))]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    views, times, tokens = shape(args.quick)
    n = views * times * tokens
    pairs = n * tokens * (views + times - 1)
    useful_fwd = 4 * HQ * DIM * pairs
    rate = matmul_gflops()
    timings = {}
    for name, (kind, trainable) in ROWS.items():
        timings[name] = {"forward": run_worker(kind, False, args.quick)}
        if trainable:
            timings[name]["forward+backward"] = run_worker(kind, True, args.quick)
    dense = timings["dense SDPA, no mask"]
    rows = []
    for name, modes in timings.items():
        for mode, t in modes.items():
            flops = useful_fwd * (1 if mode == "forward" else 3)
            rows.append({
                "backend": name,
                "pass": mode,
                "seconds": t["seconds"],
                "speed-up vs dense": dense[mode]["seconds"] / t["seconds"],
                "useful GFLOP/s": flops / t["seconds"] / 1e9,
                "peak MiB": t["peak_mib"],
            })
    report(
        "Fused view-time attention, CPU float32",
        rows,
        json_path=args.json,
        shape=f"B=1, V={views}, T={times}, S={tokens}, N={n}, {HQ} q / {HKV} kv heads, d={DIM}",
        density=(views + times - 1) / (views * times),
        ideal_speedup=views * times / (views + times - 1),
        matmul_gflops=rate,
        threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], bool(int(sys.argv[3])), bool(int(sys.argv[4])))))
    else:
        main()
