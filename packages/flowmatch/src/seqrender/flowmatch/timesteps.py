"""Training timestep samplers t ~ p(t) on [0, 1] (t = 1 is noise), Kaleido §3.2.3 / SD3 §3.1.

Every built-in sampler draws with ``sample`` and also exposes its analytic density ``pdf`` and
distribution function ``cdf`` (used by the tests and by ``seqrender.flowmatch.figures``).

- ``UniformSampler()``: t ~ U(0, 1).
- ``LogitNormalSampler(mean, std)``: t = sigmoid(u), u ~ N(mean, std²).
- ``ModeSampler(scale)``: t = f(u; s) = 1 − u − s·(cos²(πu/2) − 1 + u), u ~ U(0, 1); f is a decreasing
  bijection of [0, 1] for s ∈ [−1, 2/(π − 2)], and s = 0 is the uniform sampler.
- ``ShiftedSampler(base, shift)``: m(t, σ) applied to draws of ``base`` (see ``shift.py``).

The Kaleido default is mode(0.8) followed by shift 3: ``make_timestep_sampler("kaleido")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from .shift import check_shift, shift_derivative, shift_timesteps

MODE_SCALE_RANGE = (-1.0, 2.0 / (math.pi - 2.0))
_BISECTION_STEPS = 60


@runtime_checkable
class TimestepSampler(Protocol):
    def sample(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """Draw (n,) timesteps in [0, 1]."""


def _uniform(n: int, generator, device, dtype) -> Tensor:
    return torch.rand(n, generator=generator, device=device, dtype=dtype)


@dataclass(frozen=True)
class UniformSampler:
    """t ~ U(0, 1)."""

    def sample(self, n: int, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        """-> (n,)"""
        return _uniform(n, generator, device, dtype)

    def pdf(self, t: Tensor) -> Tensor:
        """(...) -> (...): 1 on [0, 1]."""
        return ((t >= 0) & (t <= 1)).to(t.dtype)

    def cdf(self, t: Tensor) -> Tensor:
        """(...) -> (...)"""
        return t.clamp(0, 1)


@dataclass(frozen=True)
class LogitNormalSampler:
    """t = sigmoid(u), u ~ N(mean, std²); density vanishes at both endpoints."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if not self.std > 0:
            raise ValueError(f"LogitNormalSampler std must be > 0, got {self.std}")

    def sample(self, n: int, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        """-> (n,)"""
        u = torch.randn(n, generator=generator, device=device, dtype=dtype)
        return torch.sigmoid(self.mean + self.std * u)

    def pdf(self, t: Tensor) -> Tensor:
        """φ((logit t − m)/s) / (s·t·(1 − t)) inside (0, 1), 0 elsewhere.  (...) -> (...)"""
        inside = (t > 0) & (t < 1)
        tc = torch.where(inside, t, torch.full_like(t, 0.5))
        z = (torch.logit(tc) - self.mean) / self.std
        density = torch.exp(-0.5 * z.square()) / (math.sqrt(2 * math.pi) * self.std * tc * (1 - tc))
        return torch.where(inside, density, torch.zeros_like(t))

    def cdf(self, t: Tensor) -> Tensor:
        """Φ((logit t − m)/s).  (...) -> (...)"""
        z = (torch.logit(t.clamp(0, 1)) - self.mean) / self.std
        return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


@dataclass(frozen=True)
class ModeSampler:
    """t = f(u; s) = 1 − u − s·(cos²(πu/2) − 1 + u), u ~ U(0, 1) (SD3's mode sampler, Kaleido scale 0.8)."""

    scale: float = 0.8

    def __post_init__(self):
        lo, hi = MODE_SCALE_RANGE
        if not lo <= self.scale <= hi:
            raise ValueError(f"ModeSampler scale must lie in [{lo}, {hi:.4f}] (f monotone), got {self.scale}")

    def transform(self, u: Tensor) -> Tensor:
        """f(u; s).  (...) -> (...), decreasing from f(0) = 1 to f(1) = 0."""
        return 1 - u - self.scale * (torch.cos(math.pi * u / 2).square() - 1 + u)

    def inverse(self, t: Tensor) -> Tensor:
        """u = f⁻¹(t) by bisection (f is decreasing).  (...) -> (...)"""
        lo, hi = torch.zeros_like(t), torch.ones_like(t)
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            above = self.transform(mid) > t
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def sample(self, n: int, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        """-> (n,)"""
        return self.transform(_uniform(n, generator, device, dtype)).clamp(0, 1)

    def pdf(self, t: Tensor) -> Tensor:
        """1 / |f'(f⁻¹(t))| with f'(u) = −1 − s + (sπ/2)·sin(πu).  (...) -> (...)"""
        u = self.inverse(t.clamp(0, 1))
        slope = 1 + self.scale - self.scale * math.pi / 2 * torch.sin(math.pi * u)
        inside = (t >= 0) & (t <= 1)
        return torch.where(inside, 1 / slope, torch.zeros_like(t))

    def cdf(self, t: Tensor) -> Tensor:
        """P(T ≤ t) = 1 − f⁻¹(t).  (...) -> (...)"""
        return 1 - self.inverse(t.clamp(0, 1))


@dataclass(frozen=True)
class ShiftedSampler:
    """Draws of ``base`` passed through m(t, σ) = σt / (1 + (σ − 1)t); σ > 1 favours noise."""

    base: TimestepSampler
    shift: float = 3.0

    def __post_init__(self):
        check_shift(self.shift)

    def sample(self, n: int, *, generator=None, device=None, **kw) -> Tensor:
        """-> (n,)"""
        return shift_timesteps(self.base.sample(n, generator=generator, device=device, **kw), self.shift)

    def pdf(self, t: Tensor) -> Tensor:
        """p_base(m⁻¹(t)) · (m⁻¹)'(t), with m⁻¹ the shift by 1/σ.  (...) -> (...)"""
        inverse = 1 / self.shift
        base_t = shift_timesteps(t, inverse)
        inside = (t >= 0) & (t <= 1)  # m⁻¹(1) may round to 1 + ulp: clamp inside [0, 1] only
        base_t = torch.where(inside, base_t.clamp(0, 1), base_t)
        return self.base.pdf(base_t) * shift_derivative(t, inverse)

    def cdf(self, t: Tensor) -> Tensor:
        """F_base(m⁻¹(t)).  (...) -> (...)"""
        return self.base.cdf(shift_timesteps(t.clamp(0, 1), 1 / self.shift))


_SAMPLERS = {
    "uniform": (UniformSampler, {}),
    "logit_normal": (LogitNormalSampler, {"mean": 0.0, "std": 1.0}),
    "mode": (ModeSampler, {"scale": 0.8}),
    "kaleido": (ModeSampler, {"scale": 0.8, "shift": 3.0}),
}
SAMPLER_NAMES = tuple(_SAMPLERS)


def make_timestep_sampler(name: str, **options) -> TimestepSampler:
    """Build a sampler by name: "uniform", "logit_normal" (mean, std), "mode" (scale) or "kaleido"
    (mode scale 0.8, shift 3). Every name accepts ``shift`` (σ, default 1 = none, 3 for "kaleido").
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown timestep sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    cls, defaults = _SAMPLERS[name]
    allowed = set(defaults) | {"shift"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"sampler {name!r} got unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kw = {**defaults, **options}
    shift = kw.pop("shift", 1.0)
    base = cls(**kw)
    return base if shift == 1.0 else ShiftedSampler(base, shift)
