"""The timestep shift m(t, σ) = σ·t / (1 + (σ − 1)·t) (SD3, Kaleido §3.2.3).

For σ > 1 it moves mass toward the noise end t = 1. It is an increasing bijection of [0, 1] onto
itself with m(0) = 0, m(1) = 1, and its inverse is the shift by 1/σ.
"""

from __future__ import annotations

from torch import Tensor


def check_shift(sigma: float) -> float:
    """Validate a shift factor: a finite float > 0."""
    sigma = float(sigma)
    if not sigma > 0 or sigma == float("inf"):
        raise ValueError(f"shift sigma must be a finite number > 0, got {sigma}")
    return sigma


def shift_timesteps(t: Tensor, sigma: float) -> Tensor:
    """m(t, σ) = σ·t / (1 + (σ − 1)·t), elementwise.  t: (...) in [0, 1] -> (...) in [0, 1]."""
    sigma = check_shift(sigma)
    return sigma * t / (1 + (sigma - 1) * t)


def shift_derivative(t: Tensor, sigma: float) -> Tensor:
    """dm/dt = σ / (1 + (σ − 1)·t)².  t: (...) -> (...)."""
    sigma = check_shift(sigma)
    return sigma / (1 + (sigma - 1) * t).square()
