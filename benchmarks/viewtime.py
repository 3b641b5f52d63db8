"""Fused view-time attention (4Real-Video-V2 §3.1) on this CPU: decomposed vs FlexAttention vs dense.

Shape (full): V = T = 8 frames, 8×8 tokens per frame (N = 4096), 8 q / 2 kv heads, d = 64, B = 1;
`--quick`: V = T = 4, 4×4 tokens (N = 256). Rows: dense SDPA without mask (the obvious alternative),
dense SDPA with the boolean mask, `decomposed` on the private CPU flash kernel, `decomposed` on its
public matmul-softmax path, and compiled FlexAttention (forward only: no CPU backward). Peak memory
(ru_maxrss growth over the inputs) is measured once per row in a fresh subprocess; times are medians
with the rows timed in turn (round robin) so that the load of a shared machine hits all alike.
Useful FLOPs count only the attended pairs: forward 4·B·Hq·d·pairs, forward + backward 3× that;
pairs = N·S·(V + T − 1) for the pattern. Ideal speed-up over unmasked dense: V·T / (V + T − 1).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import warnings

import torch
import torch.nn.functional as F

from _common import matmul_gflops, parse_args, report, time_round_robin
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


def attention_fn(kind: str, views: int, times: int, tokens: int, device: str = "cpu"):
    """fn(q, k, v) -> out for one row of the table (also benchmarks/viewtime_cuda.py's rows)."""
    if kind == "dense":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    if kind == "masked":
        mask = viewtime_mask(views, times, tokens, device=device)
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    if kind == "flex":
        return lambda q, k, v: flex_viewtime(q, k, v, views, times, compile=True)
    if kind == "triton":
        from seqrender.attention.viewtime.triton_kernel import triton_viewtime

        return lambda q, k, v: triton_viewtime(q, k, v, views, times)
    private = kind == "decomposed"
    return lambda q, k, v: decomposed_viewtime(q, k, v, views, times, private_ops=private)


def make_step(kind: str, backward: bool, quick: bool, *, batch: int = 1, heads: tuple[int, int] = (HQ, HKV),
              device: str = "cpu", dtype: torch.dtype = torch.float32, sizes=None):
    """A zero-argument callable running one forward (no grad) or forward + backward of a row:
    q (batch, Hq, N, DIM), k and v (batch, Hkv, N, DIM) at `sizes` (V, T, S; default `shape(quick)`)."""
    views, times, tokens = sizes or shape(quick)
    n = views * times * tokens
    gen = torch.Generator(device=device).manual_seed(0)
    new = lambda h, grad: torch.randn(batch, h, n, DIM, generator=gen, device=device, dtype=dtype, requires_grad=grad)
    q, k, v = new(heads[0], backward), new(heads[1], backward), new(heads[1], backward)
    grad = new(heads[0], False)
    fn = attention_fn(kind, views, times, tokens, device)

    def forward():
        with torch.no_grad():
            fn(q, k, v)

    def forward_backward():
        torch.autograd.grad(fn(q, k, v), (q, k, v), grad)

    return forward_backward if backward else forward


def peak_memory_worker(kind: str, backward: bool, quick: bool) -> float:
    """MiB by which one call raises the peak RSS over its inputs; runs in a fresh subprocess."""
    warnings.simplefilter("ignore")
    step = make_step(kind, backward, quick)
    if kind == "flex":
        step()  # compile outside the measurement
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def peak_memory(kind: str, backward: bool, quick: bool) -> float:
    args = [sys.executable, __file__, "--worker", kind, str(int(backward)), str(int(quick))]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    views, times, tokens = shape(args.quick)
    n = views * times * tokens
    pairs = n * tokens * (views + times - 1)
    useful_fwd = 4 * HQ * DIM * pairs
    rate = matmul_gflops()
    cases = [(name, kind, backward) for name, (kind, trainable) in ROWS.items()
             for backward in ((False, True) if trainable else (False,))]
    memory = {(name, b): peak_memory(kind, b, args.quick) for name, kind, b in cases}
    seconds = time_round_robin({(name, b): make_step(kind, b, args.quick) for name, kind, b in cases},
                          repeats=3 if args.quick else 5)
    rows = []
    for name, _, backward in cases:
        t = seconds[(name, backward)]
        rows.append({
            "backend": name,
            "pass": "forward+backward" if backward else "forward",
            "seconds": t,
            "speed-up vs dense": seconds[("dense SDPA, no mask", backward)] / t,
            "useful GFLOP/s": useful_fwd * (3 if backward else 1) / t / 1e9,
            "peak MiB": memory[(name, backward)],
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
        print(peak_memory_worker(sys.argv[2], bool(int(sys.argv[3])), bool(int(sys.argv[4]))))
    else:
        main()
