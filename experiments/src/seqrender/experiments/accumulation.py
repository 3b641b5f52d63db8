"""Gradient accumulation: one optimiser step from `trainer.grad_accum` micro-batches.

A process's slice of the global batch (global sample indices) is cut into equal consecutive
micro-batches; each loss is divided by their number before its backward, so the summed gradient is
the gradient of the mean loss over the whole slice, exactly what one pass over the slice gives
(the loss is a mean over samples). Under DDP the gradient all-reduce runs only after the last
micro-batch (`no_sync` before it).
"""
from __future__ import annotations

import contextlib
from typing import Callable

from accelerate import Accelerator
from torch import Tensor, nn


def micro_batches(indices: range, count: int) -> list[range]:
    """`indices` cut into `count` equal consecutive ranges; ValueError naming trainer.grad_accum if
    they do not divide evenly."""
    if len(indices) % count:
        raise ValueError(f"trainer.grad_accum={count} must divide the per-process batch of {len(indices)} "
                         f"(trainer.batch_size / processes)")
    size = len(indices) // count
    return [indices[i * size:(i + 1) * size] for i in range(count)]


def accumulate_gradients(accelerator: Accelerator, model: nn.Module, loss_fn: Callable, draw: Callable,
                         step: int, indices: range, count: int) -> Tensor:
    """Backward of the mean loss over the samples `indices` of step `step`, in `count` micro-batches.
    Returns that mean loss (detached scalar)."""
    total = None
    parts = micro_batches(indices, count)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss = loss_fn(model, draw(step, part).to(accelerator.device)) / count
            accelerator.backward(loss)
        total = loss.detach() if total is None else total + loss.detach()
    return total
