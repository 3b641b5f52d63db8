"""Sharding (`trainer.sharding=none|fsdp`): FSDP2 through accelerate, full-state-dict checkpoints
and an EMA sharded like the weights.

`fsdp` gives accelerate an FSDP2 plugin (`fully_shard` of every transformer block of `model.blocks`,
then of the root; parameters, gradients and optimiser state become DTensors sharded on dim 0 over
the processes; gradients are reduce-scattered as a mean, so the update equals DDP's). accelerate
turns FSDP on only for multi-accelerator runs; `enable_cpu_fsdp` does the same for several CPU
processes (gloo), which is how it is tested here. With one process there is nothing to shard and the
run trains unsharded, as accelerate does on one GPU.

Checkpoints hold full (gathered) tensors in exactly the layout of an unsharded run
(`model.safetensors`, `ema.safetensors`, the optimiser's usual `state_dict()` with integer ids), so
one written with N processes resumes with any other number, sharded or not. The EMA lives as local
shards beside the weights' shards (`ShardedEMA`: the same element-wise lerp as an unsharded EMA) and
is gathered into the full EMA module (kept on the CPU when sharded) at every checkpoint. All
gathering functions are collective: call them on every process.
"""
from __future__ import annotations

import os
from typing import Literal

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

Sharding = Literal["none", "fsdp"]


def fsdp_plugin() -> FullyShardedDataParallelPlugin:
    """FSDP2, transformer-block wrapping (the class names are filled in by `prepare`), full state dicts."""
    return FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                          reshard_after_forward=True, state_dict_type="FULL_STATE_DICT",
                                          cpu_ram_efficient_loading=False)


def make_accelerator(sharding: Sharding, **kwargs) -> Accelerator:
    """`Accelerator(**kwargs)` with `trainer.sharding` applied. Several CPU processes with "fsdp": the
    state is switched to FSDP (accelerate itself only does that on accelerators), so `prepare`,
    `no_sync`, `clip_grad_norm_` and `backward` take their FSDP2 paths. accelerate's environment flag
    ACCELERATE_USE_FSDP, set by passing a plugin, is restored afterwards (it would leak into later
    accelerators of this process)."""
    plugin = fsdp_plugin() if sharding == "fsdp" else None
    flag = os.environ.get("ACCELERATE_USE_FSDP")
    try:
        accelerator = Accelerator(**kwargs, fsdp_plugin=plugin)
    finally:
        os.environ.pop("ACCELERATE_USE_FSDP", None)
        if flag is not None:
            os.environ["ACCELERATE_USE_FSDP"] = flag
    if plugin is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
        accelerator.state.fsdp_plugin = plugin
        accelerator.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # AcceleratorState() copies it
    return accelerator


def is_sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def prepare(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer):
    """`accelerator.prepare(model, optimizer)`; under FSDP every module of `model.blocks` is its own
    shard group (the wrapped class names are taken from the model)."""
    if is_sharded(accelerator):
        blocks = getattr(model, "blocks", None)
        names = sorted({type(_unwrapped(b)).__name__ for b in blocks}) if isinstance(blocks, nn.ModuleList) else []
        accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap = names
    model, optimizer = accelerator.prepare(model, optimizer)
    if is_sharded(accelerator) and accelerator.is_main_process:
        local = sum(local_tensor(p).numel() for p in model.parameters())
        total = sum(p.numel() for p in model.parameters())
        print(f"FSDP2: {total} parameters sharded over {accelerator.num_processes} processes "
              f"({local} on this one)", flush=True)
    return model, optimizer


def _unwrapped(module: nn.Module) -> nn.Module:
    """The block inside an activation-checkpoint wrapper (or the module itself)."""
    return getattr(module, "_checkpoint_wrapped_module", module)


def local_tensor(t: Tensor) -> Tensor:
    """This process's shard of `t` (a DTensor), or `t` itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def full_tensor(t: Tensor) -> Tensor:
    """The whole of `t`: gathered from every process if it is a DTensor (collective), else `t`."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(full: Tensor, reference: Tensor) -> Tensor:
    """`full` (the same on every process) sharded as `reference` is, or `full` if `reference` is a
    plain tensor. No communication: each process keeps its own chunk."""
    if not isinstance(reference, DTensor):
        return full
    return distribute_tensor(full.to(reference.device, reference.dtype), reference.device_mesh,
                             reference.placements, src_data_rank=None)


def full_weights(model: nn.Module) -> nn.Module | dict[str, Tensor]:
    """What a checkpoint stores for `model`: the module itself when unsharded, else its state dict
    gathered (collective) to full CPU tensors, under the unsharded model's keys."""
    state = model.state_dict()
    if not any(isinstance(v, DTensor) for v in state.values()):
        return model
    return {name: full_tensor(value).detach().cpu() for name, value in state.items()}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """`optimizer.state_dict()` with every sharded state tensor gathered (collective): the layout of
    an unsharded optimiser, readable with any number of processes."""
    state = optimizer.state_dict()
    state["state"] = {i: {k: full_tensor(v).cpu() if isinstance(v, DTensor) else v for k, v in s.items()}
                      for i, s in state["state"].items()}
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a full optimiser state (as `full_optimizer_state` writes it) into a prepared optimiser,
    sharding each per-parameter tensor like its parameter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = {i: {k: shard_like(v, params[i]) if torch.is_tensor(v) and v.shape == params[i].shape else v
                   for k, v in s.items()} for i, s in state["state"].items()}
    optimizer.load_state_dict({**state, "state": sharded})


def grad_norm_value(norm) -> float:
    """The total gradient norm returned by `clip_grad_norm_` as a float (NaN when None)."""
    if norm is None:
        return float("nan")
    return float(full_tensor(torch.as_tensor(norm)))


class ShardedEMA:
    """EMA of a (possibly sharded) model's parameters, held as shards laid out like the parameters'.

    `module`: the full EMA model (returned by training, written to checkpoints); while the model is
    sharded it is kept on the CPU and refreshed by `gather()`. Unsharded, the shards *are* its
    parameters (on the training device) and `gather()` does nothing."""

    def __init__(self, module: nn.Module, model: nn.Module, device: torch.device):
        params = list(model.parameters())
        self.sharded = any(isinstance(p, DTensor) for p in params)
        self.module = module if self.sharded else module.to(device)
        ema_params = list(self.module.parameters())
        if [tuple(e.shape) for e in ema_params] != [tuple(p.shape) for p in params]:
            raise ValueError("the EMA model's parameters do not match the trained model's")
        self.shards = [shard_like(e.detach(), p) if self.sharded else e for e, p in zip(ema_params, params)]

    @torch.no_grad()
    def update(self, model: nn.Module, *, decay: float) -> None:
        """shard ← decay · shard + (1 − decay) · parameter, element-wise on the local shards."""
        for shard, p in zip(self.shards, model.parameters()):
            local_tensor(shard).lerp_(local_tensor(p.detach()), 1 - decay)

    @torch.no_grad()
    def gather(self) -> nn.Module:
        """Copy the shards into the full EMA module (collective when sharded); returns the module."""
        if self.sharded:
            for e, shard in zip(self.module.parameters(), self.shards):
                e.copy_(full_tensor(shard))
        return self.module
