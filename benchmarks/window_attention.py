"""Temporal window attention (Kaleido §3.2.1 iv) vs full attention over all frames, CPU float32.

Shape (full): B = 1, V = 12 frames, 16×16 tokens per frame, Kaleido-Small heads (16 q / 4 kv,
d = 64, hidden 1024); `--quick`: V = 6, 8×8 tokens. K = H = W is full attention over all V·H·W
tokens. Each row times forward + backward of (a) the attention op alone (window partition, GQA
SDPA, unpartition) and (b) the whole `WindowAttention` layer (projections and one register
included), all rows timed in turn (round robin, median). FLOP ratio = full-attention FLOPs / windowed FLOPs = (H·W)/K² for the attention op.
The paper's column is Kaleido-Small training throughput (batches/s) relative to full attention (58).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from _common import matmul_gflops, parse_args, report, time_round_robin
from seqrender.attention import WindowAttention, window_partition, window_unpartition

HQ, HKV, DIM = 16, 4, 64
PAPER = {1: 148, 2: 146, 4: 142, 8: 103, "full": 58}


def attention_op(q, k, v, window: int):
    """q (B, V, H, W, Hq, d), k/v (B, V, H, W, Hkv, d) -> (B, V, H, W, Hq, d)."""
    parts = [rearrange(window_partition(x, window), "n l h d -> n h l d") for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*parts, enable_gqa=True)
    return window_unpartition(rearrange(out, "n h l d -> n l h d"), window, tuple(q.shape[:4]))


def step_fn(fn, inputs):
    grad = None

    def step():
        nonlocal grad
        out = fn(*inputs)
        grad = torch.ones_like(out) if grad is None else grad
        torch.autograd.grad(out, inputs, grad)

    return step


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    views, size = (6, 8) if args.quick else (12, 16)
    repeats = 3 if args.quick else 5
    gen = torch.Generator().manual_seed(0)
    grid = (1, views, size, size)
    q = torch.randn(*grid, HQ, DIM, generator=gen, requires_grad=True)
    k, v = (torch.randn(*grid, HKV, DIM, generator=gen, requires_grad=True) for _ in range(2))
    x = torch.randn(*grid, HQ * DIM, generator=gen, requires_grad=True)
    rate = matmul_gflops()
    windows = [w for w in (1, 2, 4, 8) if w < size] + [size]
    steps = {}
    for window in windows:
        layer = WindowAttention(HQ * DIM, HQ, HKV, window=window)
        steps[window, "op"] = step_fn(lambda a, b, c, w=window: attention_op(a, b, c, w), (q, k, v))
        steps[window, "layer"] = step_fn(layer, (x,))
    seconds = time_round_robin(steps, repeats=repeats)
    timings = {window: (seconds[window, "op"], seconds[window, "layer"]) for window in windows}
    full_op, full_layer = timings[size]
    n = views * size * size
    rows = []
    for window, (op, lay) in timings.items():
        key = "full" if window == size else window
        flops = 12 * HQ * DIM * n * views * window * window  # 6 matmuls of fwd + bwd over attended pairs
        rows.append({
            "K": "full" if window == size else window,
            "attention s": op,
            "layer s": lay,
            "FLOP ratio": size * size / (window * window),
            "attention speed-up": full_op / op,
            "layer speed-up": full_layer / lay,
            "paper throughput ratio": PAPER.get(key, float("nan")) / PAPER["full"],
            "attention GFLOP/s": flops / op / 1e9,
        })
    report(
        "Temporal window attention, forward + backward, CPU float32",
        rows,
        json_path=args.json,
        shape=f"B=1, V={views}, {size}x{size} tokens/frame (N={n}), {HQ} q / {HKV} kv heads, d={DIM}",
        matmul_gflops=rate,
        threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    main()
