"""ODE solvers for dz/dt = v(z, t) from t = 1 (noise) to t = 0 (data) along a schedule.

``sample`` adds classifier-free guidance (``guidance.py``), per-entry keep masks (reference tokens
stay at their clean value while the targets are integrated), a per-step callback and a progress bar.

- Euler: z ← z + (t' − t)·v(z, t); one evaluation per step, first order.
- Heun: predictor z̃ = z + h·v(z, t), corrector z ← z + h·(v(z, t) + v(z̃, t'))/2; two evaluations per
  step (also on the last step, which ends at t = 0 where the rectified-flow velocity is finite),
  second order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .guidance import VelocityFn, guided_velocity

Field = Callable[[Tensor, Tensor], Tensor]
"""field(z: (B, ...), t: (B,)) -> v: (B, ...), already guided and masked."""


def euler_step(field: Field, z: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    """One explicit Euler step.  z: (B, ...); t, t_next: (B,) -> (B, ...)"""
    h = (t_next - t).reshape(-1, *([1] * (z.ndim - 1)))
    return z + h * field(z, t)


def heun_step(field: Field, z: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    """One Heun (explicit trapezoidal) step.  z: (B, ...); t, t_next: (B,) -> (B, ...)"""
    h = (t_next - t).reshape(-1, *([1] * (z.ndim - 1)))
    v = field(z, t)
    v_next = field(z + h * v, t_next)
    return z + h * (v + v_next) / 2


SOLVERS = {"euler": euler_step, "heun": heun_step}
EVALUATIONS_PER_STEP = {"euler": 1, "heun": 2}


def _check_sample_args(solver: str, schedule: Tensor, clean: Tensor | None, keep_mask: Tensor | None) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if schedule.ndim != 1 or schedule.shape[0] < 2:
        raise ValueError(f"schedule must have shape (n + 1,) with n >= 1, got {tuple(schedule.shape)}")
    if (clean is None) != (keep_mask is None):
        raise ValueError("clean and keep_mask must be given together (keep_mask True = hold at clean)")


def _progress(steps: range, enabled: bool):
    if not enabled:
        return steps
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from err
    return tqdm(steps, desc="sampling", unit="step")


def sample(
    velocity_fn: VelocityFn,
    noise: Tensor,
    schedule: Tensor,
    *,
    solver: str = "euler",
    guidance_scale: float = 1.0,
    clean: Tensor | None = None,
    keep_mask: Tensor | None = None,
    progress: bool = False,
    callback: Callable[[int, float, Tensor], None] | None = None,
) -> Tensor:
    """Integrate from ``noise`` at t = schedule[0] to t = schedule[-1] and return x_0.

    velocity_fn(z: (B, ...), t: (B,), *, drop_condition: (B,) bool) -> (B, ...); with
    guidance_scale != 1 it is called once per evaluation on the 2B batch [cond; uncond].
    noise: (B, ...); schedule: (n + 1,) decreasing (e.g. ``make_schedule``).
    clean, keep_mask: both or neither; keep_mask (bool, broadcastable to noise, True = keep) marks the
    entries held at ``clean`` throughout (the model always sees them clean).
    callback(step, t_next, z) is called after every step with the state at time t_next.
    """
    _check_sample_args(solver, schedule, clean, keep_mask)
    step = SOLVERS[solver]
    hold = (lambda z: z) if keep_mask is None else (lambda z: torch.where(keep_mask, clean, z))

    def field(z: Tensor, t: Tensor) -> Tensor:
        return guided_velocity(velocity_fn, hold(z), t, guidance_scale=guidance_scale)

    ts = schedule.to(device=noise.device, dtype=noise.dtype)
    batch = noise.shape[0]
    z = hold(noise)
    for i in _progress(range(ts.shape[0] - 1), progress):
        z = hold(step(field, z, ts[i].repeat(batch), ts[i + 1].repeat(batch)))
        if callback is not None:
            callback(i, float(ts[i + 1]), z)
    return z
