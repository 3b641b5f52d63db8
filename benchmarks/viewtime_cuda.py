"""Fused view-time attention (4Real-Video-V2 §3.1) on a CUDA GPU: Triton vs FlexAttention vs dense SDPA.

Needs a CUDA GPU (`scripts/gpu_check.sh` runs it; the CPU table is benchmarks/viewtime.py).
Shape (full): B = 2, V = T = 8 frames of 16×16 tokens (N = 16384), 16 q / 4 kv heads, d = 64,
bfloat16; `--quick`: V = T = 4 frames of 8×8 tokens (N = 1024). Rows: dense SDPA without a mask
(the obvious alternative: flash attention over all N² pairs, 4.3× the pattern's work at V = T = 8),
dense SDPA with the boolean pattern mask, compiled FlexAttention with the pattern's block mask, and
this package's Triton kernel. Times are medians of CUDA-event timings, rows in turn (round robin);
peak memory is the growth of torch's allocator peak over the inputs. Useful FLOPs count only the
attended pairs (forward 4·B·Hq·d·pairs, forward + backward 3× that), against this GPU's bf16
matmul rate measured in the same run.
"""

from __future__ import annotations

import statistics
import sys
import warnings

import torch

from _common import parse_args, report
from viewtime import DIM, make_step

BATCH, HQ, HKV, DTYPE = 2, 16, 4, torch.bfloat16
ROWS = {"dense SDPA, no mask": "dense", "dense SDPA + bool mask": "masked", "flex (compiled)": "flex",
        "triton (this package)": "triton"}


def shape(quick: bool) -> tuple[int, int, int]:
    """(V, T, S)."""
    return (4, 4, 64) if quick else (8, 8, 256)


def cuda_seconds(fn) -> float:
    """One call's GPU time (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def peak_mib(fn) -> float:
    """MiB by which one call raises the allocator's peak over what is allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    """This GPU's bf16 (n × n) @ (n × n) rate in TFLOP/s (median of `repeats` after warm-up)."""
    a, b = (torch.randn(n, n, device="cuda", dtype=DTYPE) for _ in range(2))
    for _ in range(3):
        a @ b
    return 2 * n**3 / statistics.median(cuda_seconds(lambda: a @ b) for _ in range(repeats)) / 1e12


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    if not torch.cuda.is_available():
        sys.exit("benchmarks/viewtime_cuda.py needs a CUDA GPU (benchmarks/viewtime.py is the CPU table)")
    warnings.simplefilter("ignore")
    views, times, tokens = shape(args.quick)
    n = views * times * tokens
    pairs = n * tokens * (views + times - 1)
    useful_fwd = 4 * BATCH * HQ * DIM * pairs
    rate = matmul_tflops()
    steps = {(name, backward): make_step(kind, backward, args.quick, batch=BATCH, heads=(HQ, HKV), device="cuda",
                                         dtype=DTYPE, sizes=shape(args.quick))
             for name, kind in ROWS.items() for backward in (False, True)}
    for step in steps.values():  # compile, autotune, warm the caches
        step()
        step()
    memory = {key: peak_mib(step) for key, step in steps.items()}
    samples = {key: [] for key in steps}
    for _ in range(5 if args.quick else 20):
        for key, step in steps.items():
            samples[key].append(cuda_seconds(step))
    seconds = {key: statistics.median(values) for key, values in samples.items()}
    rows = []
    for (name, backward), t in seconds.items():
        useful = useful_fwd * (3 if backward else 1) / t / 1e12
        rows.append({
            "backend": name,
            "pass": "forward+backward" if backward else "forward",
            "ms": t * 1e3,
            "speed-up vs dense": seconds[("dense SDPA, no mask", backward)] / t,
            "useful TFLOP/s": useful,
            "of bf16 matmul": useful / rate,
            "peak MiB": memory[(name, backward)],
        })
    report(
        f"Fused view-time attention, {torch.cuda.get_device_name()} bfloat16",
        rows,
        json_path=args.json,
        shape=f"B={BATCH}, V={views}, T={times}, S={tokens}, N={n}, {HQ} q / {HKV} kv heads, d={DIM}",
        density=(views + times - 1) / (views * times),
        ideal_speedup=views * times / (views + times - 1),
        matmul_tflops=rate,
        torch=torch.__version__,
    )


if __name__ == "__main__":
    main()
