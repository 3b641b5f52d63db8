"""Where `decomposed` overtakes dense masked SDPA (`reference`) for fused view-time attention on CPU.

Sweeps grids V × T and tokens per frame S (8 q / 2 kv heads, d = 64, B = 1, float32), times both
exact CPU backends round robin, forward and forward + backward, and prints the speed of decomposed
relative to reference. The rule `seqrender.attention.viewtime.api.choose_cpu_backend` encodes the
crossover found here (its column in the table says what `auto` picks); `--quick` sweeps fewer shapes.
"""

from __future__ import annotations

import warnings

import torch

from _common import matmul_gflops, parse_args, report, time_round_robin
from seqrender.attention.viewtime import decomposed_viewtime, reference_viewtime
from seqrender.attention.viewtime.api import choose_cpu_backend

HQ, HKV, DIM = 8, 2, 64
BACKENDS = {"reference": reference_viewtime, "decomposed": decomposed_viewtime}


def shapes(quick: bool) -> list[tuple[int, int, int]]:
    """(V, T, S) grids to sweep."""
    grids = [(2, 2), (4, 4), (2, 8), (8, 8)] if not quick else [(2, 2), (4, 4)]
    tokens = [4, 16, 64, 256] if not quick else [4, 16, 64]
    return [(v, t, s) for v, t in grids for s in tokens if v * t * s <= 8192]


def make_step(backend: str, views: int, times: int, tokens: int, backward: bool):
    """Zero-argument callable: one forward (no grad) or forward + backward of `backend`."""
    n = views * times * tokens
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, HQ, n, DIM, generator=gen, requires_grad=backward)
    k, v = (torch.randn(1, HKV, n, DIM, generator=gen, requires_grad=backward) for _ in range(2))
    grad = torch.randn(1, HQ, n, DIM, generator=gen)
    fn = BACKENDS[backend]

    def forward():
        with torch.no_grad():
            fn(q, k, v, views, times)

    def forward_backward():
        torch.autograd.grad(fn(q, k, v, views, times), (q, k, v), grad)

    return forward_backward if backward else forward


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    rows = []
    for views, times, tokens in shapes(args.quick):
        for backward in (False, True):
            steps = {name: make_step(name, views, times, tokens, backward) for name in BACKENDS}
            seconds = time_round_robin(steps, repeats=3 if args.quick else 7)
            rows.append({
                "V": views, "T": times, "S": tokens, "N": views * times * tokens,
                "pass": "forward+backward" if backward else "forward",
                "reference s": seconds["reference"],
                "decomposed s": seconds["decomposed"],
                "decomposed speed-up": seconds["reference"] / seconds["decomposed"],
                "auto picks": choose_cpu_backend(views, times, tokens),
            })
    report("Fused view-time dispatch on CPU: decomposed vs dense masked SDPA", rows, json_path=args.json,
           heads=f"{HQ} q / {HKV} kv, d={DIM}, B=1, float32", matmul_gflops=matmul_gflops(),
           threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
