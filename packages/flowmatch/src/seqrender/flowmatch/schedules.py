"""Inference schedules: (n + 1,) times decreasing from t = 1 (noise) to t = 0 (data).

A solver with n steps integrates from ts[i] to ts[i + 1]; the model is evaluated at ts[:-1] (Euler)
or at ts[:-1] and ts[1:] (Heun).

Reading of the paper's "linspace [1, 999]" and "trailing [1, 980]" (Kaleido Table 4). The training
grid is diffusers' flow-matching table of ``num_train_steps`` = T = 1000 noise levels ordered from the
noise end, σ_k = 1 − k/T for k = 0 … T − 1 (σ_0 = 1, σ_999 = 0.001). The brackets name the range of
grid indices the n evaluation times span (shown for n = 50):

- linspace: k = linspace(0, T − 1, n), i.e. t = linspace(1, 1/T, n), then 0. Indices up to 999; this
  is what diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps(n)`` gives without a shift.
- trailing: k = 0, T/n, 2T/n, …, i.e. t = 1 − i/n, then 0: the uniform grid (indices up to 980 for
  n = 50, diffusers' "trailing" spacing counted from the noise end).

The indices are not rounded to integers (as in diffusers' flow-matching scheduler).

``linear_quadratic_schedule`` is the function of Genmo's Mochi sampler (as in diffusers' Mochi
pipeline): with L = n // 2 linear steps, τ = threshold_noise and the "progress" s = 1 − t,
s_i = τ·i/L for i < L, then the quadratic through s_L = τ with matching slope that reaches s_n = 1.

``shift_schedule(ts, σ)`` applies m(t, σ) once (diffusers' ``set_timesteps`` with shift > 1 applies
it twice; see the spec sheet), keeping the endpoints 1 and 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .shift import shift_timesteps

DEFAULT_TRAIN_STEPS = 1000


def _check_steps(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of steps n must be an int >= 1, got {n!r}")
    return n


def _finish(evaluation_times: Tensor, dtype: torch.dtype) -> Tensor:
    """Append the terminal t = 0.  (n,) float64 -> (n + 1,) dtype."""
    return torch.cat([evaluation_times, evaluation_times.new_zeros(1)]).to(dtype)


def linspace_schedule(n: int, *, num_train_steps: int = DEFAULT_TRAIN_STEPS, dtype=torch.float32) -> Tensor:
    """t = linspace(1, 1/T, n) then 0 (the paper's "linspace [1, 999]").  -> (n + 1,)"""
    _check_steps(n)
    return _finish(torch.linspace(1.0, 1.0 / num_train_steps, n, dtype=torch.float64), dtype)


def trailing_schedule(n: int, *, dtype=torch.float32) -> Tensor:
    """t = 1 − i/n for i = 0 … n (the paper's "trailing [1, 980]" for n = 50).  -> (n + 1,)

    The points are on the T-step grid whenever n divides T.
    """
    _check_steps(n)
    return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64).to(dtype)


def linear_quadratic_schedule(
    n: int, threshold_noise: float = 0.025, *, linear_steps: int | None = None, dtype=torch.float32
) -> Tensor:
    """Mochi's linear-quadratic schedule: linear just below t = 1, then quadratic.  -> (n + 1,)

    With L = linear_steps (default n // 2), Q = n − L, τ = threshold_noise and s = 1 − t:
    s_i = τ·i/L for 0 ≤ i < L and s_i = a·i² + b·i + c for L ≤ i ≤ n, where
    a = (L − τn) / (L·Q²), b = τ/L − 2(L − τn)/Q², c = a·L². n = 1 gives [1, 0].
    """
    _check_steps(n)
    if not 0 < threshold_noise < 1:
        raise ValueError(f"threshold_noise must lie in (0, 1), got {threshold_noise}")
    linear = n // 2 if linear_steps is None else linear_steps
    if not 0 <= linear < n:
        raise ValueError(f"linear_steps must lie in [0, n) = [0, {n}), got {linear}")
    if linear == 0:
        return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64).to(dtype)
    i = torch.arange(n + 1, dtype=torch.float64)
    quadratic = n - linear
    excess = linear - threshold_noise * n
    a = excess / (linear * quadratic**2)
    b = threshold_noise / linear - 2 * excess / quadratic**2
    progress = torch.where(i < linear, threshold_noise * i / linear, a * i**2 + b * i + a * linear**2)
    progress[-1] = 1.0  # the quadratic reaches 1 at i = n up to rounding; make the endpoint exact
    return (1 - progress).to(dtype)


def shift_schedule(ts: Tensor, sigma: float) -> Tensor:
    """Apply m(t, σ) to every time of a schedule (endpoints stay 1 and 0).  (n + 1,) -> (n + 1,)"""
    return shift_timesteps(ts, sigma)


_SCHEDULES = {
    "linspace": linspace_schedule,
    "trailing": trailing_schedule,
    "linear_quadratic": linear_quadratic_schedule,
}
SCHEDULE_NAMES = tuple(_SCHEDULES)


def make_schedule(name: str, n: int, *, shift: float = 1.0, **options) -> Tensor:
    """Schedule by name ("linspace", "trailing", "linear_quadratic"), optionally shifted.  -> (n + 1,)

    ``options`` go to the schedule function (e.g. ``threshold_noise``, ``num_train_steps``, ``dtype``).
    """
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    ts = _SCHEDULES[name](n, **options)
    return ts if shift == 1.0 else shift_schedule(ts, shift)
