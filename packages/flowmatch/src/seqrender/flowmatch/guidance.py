"""Classifier-free guidance with the conditional and unconditional passes batched into one call."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

VelocityFn = Callable[..., Tensor]
"""velocity_fn(z: (B, ...), t: (B,), *, drop_condition: (B,) bool) -> v: (B, ...)"""


def guided_velocity(velocity_fn: VelocityFn, z: Tensor, t: Tensor, *, guidance_scale: float = 1.0) -> Tensor:
    """v = v_uncond + w·(v_cond − v_uncond), from a single call on the 2B batch [cond; uncond].

    z: (B, ...); t: (B,) -> (B, ...). With w = 1 only the conditional pass is run (B rows).
    """
    batch = z.shape[0]
    keep = torch.zeros(batch, dtype=torch.bool, device=z.device)
    if guidance_scale == 1.0:
        return velocity_fn(z, t, drop_condition=keep)
    drop = torch.cat([keep, ~keep])
    v_cond, v_uncond = velocity_fn(torch.cat([z, z]), torch.cat([t, t]), drop_condition=drop).chunk(2)
    return v_uncond + guidance_scale * (v_cond - v_uncond)
