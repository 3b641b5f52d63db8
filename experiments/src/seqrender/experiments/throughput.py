"""Training throughput: samples/s, tokens/s and model FLOP/s, logged every `trainer.log_every` steps.

Model FLOPs per optimiser step are counted once, on the run's step 0 (only there: the counting
dispatch mode may pick other kernels, and a resumed run must repeat the uninterrupted one exactly;
resumed segments read the figure back from `<run dir>/throughput.json`), with
`torch.utils.flop_counter.FlopCounterMode` around its forward + backward (matmuls, convolutions and
attention, as the hardware executes them: activation checkpointing's recomputation counts too);
times the number of processes for the global figure. Where counting sees nothing (a compiled
model) the estimate is the usual 6 · trainable parameters · tokens.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def tokens_per_sample(x_shape, patch_size: int) -> int:
    """Transformer tokens of one sample whose model input is `x_shape` (B, *frames, C, H, W)."""
    *_, height, width = x_shape
    frames = 1
    for n in x_shape[1:-3]:
        frames *= n
    return frames * (height // patch_size) * (width // patch_size)


def analytic_flops(model: nn.Module, tokens: int) -> float:
    """6 · trainable parameters · tokens: forward (2) + backward (4) of every weight, no attention."""
    return 6.0 * sum(p.numel() for p in model.parameters() if p.requires_grad) * tokens


# The SDPA kernels (each with a `_backward` op, same argument order) counted with torch's attention
# formulas: the CUDA ones torch covers, whose formulas before torch 2.12 asserted that key/value have
# the query's heads (grouped-query attention crashed the count), and the CPU flash kernel, which
# torch's counter does not cover at all (its attention FLOPs were missing from CPU figures until
# 2026-12-04: 37 % of the main job's step). `gqa_formula` gives the formulas the query's heads.
SDPA_OPS = tuple(f"_scaled_dot_product_{kind}_attention" for kind in ("flash", "efficient", "cudnn")) + (
    "_scaled_dot_product_flash_attention_for_cpu",)


def gqa_formula(formula, query_at: int):
    """`formula(*shapes)` of torch.utils.flop_counter with the key and value shapes (the two after the
    query, at `query_at`) given the query's head count: the kernel broadcasts each kv head over its
    query group, so the work is that of multi-head attention with the query's heads."""
    def counted(*shapes, **kwargs):
        shapes = list(shapes)
        heads = shapes[query_at][1]
        for i in (query_at + 1, query_at + 2):
            shapes[i] = (shapes[i][0], heads, *shapes[i][2:])
        return formula(*shapes, **kwargs)
    return counted


def gqa_flop_mapping() -> dict:
    """custom_mapping for FlopCounterMode: torch's attention formulas, GQA-aware, on the SDPA_OPS."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    raw = lambda f: getattr(f, "__wrapped__", f)  # the module's formulas are already shape-wrapped
    forward, backward = raw(flop_counter.sdpa_flop), raw(flop_counter.sdpa_backward_flop)
    mapping = {}
    for name in SDPA_OPS:
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = gqa_formula(forward, 0)
        if hasattr(aten, f"{name}_backward"):
            mapping[getattr(aten, f"{name}_backward")] = gqa_formula(backward, 1)
    return mapping


class FlopCount:
    """Context manager counting the FLOPs run inside it (`.total`), or nothing when disabled."""

    def __init__(self, enabled: bool):
        self.mode = FlopCounterMode(display=False, custom_mapping=gqa_flop_mapping()) if enabled else None
        self.total = 0

    def __enter__(self):
        if self.mode is not None:
            self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self.mode is not None:
            self.mode.__exit__(*exc)
            self.total = self.mode.get_total_flops()
        return False


@dataclass
class ThroughputMeter:
    """Rates over the steps since the last `rates()` call. samples_per_step: the global batch."""

    samples_per_step: int
    tokens_per_sample: int
    flops_per_step: float = 0.0
    _since: float = field(default_factory=lambda: time.perf_counter())
    _steps: int = 0

    def step(self) -> None:
        self._steps += 1

    def rates(self) -> dict[str, float]:
        """samples/s, tokens/s and model GFLOP/s since the previous call; resets the window."""
        now = time.perf_counter()
        seconds, steps = max(now - self._since, 1e-9), self._steps
        self._since, self._steps = now, 0
        samples = steps * self.samples_per_step
        return {"samples_per_s": samples / seconds, "tokens_per_s": samples * self.tokens_per_sample / seconds,
                "model_gflops": steps * self.flops_per_step / seconds / 1e9}


def start_meter(model: nn.Module, draw, step: int, *, batch_size: int, processes: int, counted_flops: float,
                record: Path, save: bool) -> ThroughputMeter:
    """The meter of a run segment, after its first step: tokens from one drawn sample's model input;
    FLOPs per step from the count of the run's step 0 on this process (× processes), saved to
    `record` (when `save`) for resumed segments, else read from it, else the 6·N·tokens estimate."""
    tokens = tokens_per_sample(draw(step, range(1)).x.shape, model.config.patch_size)
    if counted_flops:
        flops = counted_flops * processes
        if save:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({"flops_per_step": flops}))
    elif record.is_file():
        flops = json.loads(record.read_text())["flops_per_step"]
    else:
        flops = analytic_flops(model, tokens) * batch_size
    return ThroughputMeter(batch_size, tokens, flops)
