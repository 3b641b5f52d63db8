"""Mixed precision (`trainer.precision`) through accelerate, and the per-block max activation figure
(Kaleido §3.2.2: registers keep the top-1 |activation| far below fp16's limit of 65504).

fp32 trains in float32; bf16 autocasts to bfloat16; fp16 autocasts to float16 with dynamic loss
scaling (a GradScaler: the loss is multiplied before backward, gradients are unscaled before
clipping, a step with inf/NaN gradients is skipped and the scale halved). accelerate does all of
this on GPUs; on CPU it silently leaves fp16 off, so `enable_cpu_fp16` switches on torch's CPU
float16 autocast and a CPU GradScaler the same way, which is how the fp16 path is tested here.
Both reduced precisions are very slow on CPUs without bf16/fp16 units (~500× for bf16 here).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn

from seqrender.models import record_max_activations

ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def enable_cpu_fp16(accelerator: Accelerator) -> Accelerator:
    """fp16 on CPU: float16 autocast + a CPU GradScaler (accelerate only does this on accelerators).
    Call before `accelerator.prepare` (the optimiser and model wrappers pick these up there)."""
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu" and accelerator.scaler is None:
        accelerator.native_amp = True
        accelerator.scaler = torch.amp.GradScaler("cpu")
    return accelerator


@dataclass
class ActivationProbe:
    """maxima: top-1 |output| of each transformer block over the probed forwards (empty if none ran)."""

    maxima: list[float] = field(default_factory=list)


@contextlib.contextmanager
def probe_max_activations(model: nn.Module, *, active: bool):
    """Record the per-block max |activation| of every forward of `model.blocks` within the context
    (when `active` and the model has blocks); yields an ActivationProbe filled on exit."""
    probe = ActivationProbe()
    blocks = getattr(model, "blocks", None)
    if not active or not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        yield probe
        return
    with record_max_activations(blocks) as rows:
        yield probe
    if rows:
        probe.maxima = [max(column) for column in zip(*rows)]
