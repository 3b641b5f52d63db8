"""Activation checkpointing of a model's transformer blocks (`trainer.activation_checkpointing`).

Each block of `model.blocks` (Kaleido, 4Real-Video-V2) is wrapped with torch's non-reentrant
checkpoint wrapper: its activations are dropped after the forward pass and recomputed in the
backward pass, trading one extra block forward for memory that no longer grows with depth. Outputs
and gradients are unchanged, and so are the state-dict keys (the wrapper strips its prefix), so
checkpoints stay interchangeable with unwrapped models. Works the same under DDP.
"""
from __future__ import annotations

from functools import partial

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap every module of `model.blocks` (an nn.ModuleList) in place; returns how many."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"trainer.activation_checkpointing needs a model with an nn.ModuleList `blocks`; "
                         f"{type(model).__name__} has none")
    targets = {id(block) for block in blocks}
    apply_activation_checkpointing(model, checkpoint_wrapper_fn=partial(checkpoint_wrapper,
                                                                        checkpoint_impl=CheckpointImpl.NO_REENTRANT),
                                   check_fn=lambda module: id(module) in targets)
    return len(targets)
