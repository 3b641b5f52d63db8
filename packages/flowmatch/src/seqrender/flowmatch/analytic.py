"""Closed-form rectified flow for 1-D Gaussian mixtures: a ground truth for solvers and schedules.

Data x ~ Σ_k π_k N(μ_k, s_k²), noise ε ~ N(0, 1), z_t = (1 − t)x + tε. Given component k, (x, ε, z_t)
are jointly Gaussian with z_t ~ N(m_k, V_k), m_k = (1 − t)μ_k, V_k = (1 − t)²s_k² + t², and
Cov(x, z_t) = (1 − t)s_k², Cov(ε, z_t) = t. Hence the marginal velocity field is

    v(z, t) = E[ε − x | z_t = z] = Σ_k w_k(z, t) · [ (t − (1 − t)s_k²)/V_k · (z − m_k) − μ_k ],

with posterior weights w_k ∝ π_k N(z; m_k, V_k). In one dimension the flow map of dz/dt = v is
increasing, so integrating from t = 1 to 0 is exactly the quantile map x = F⁻¹(Φ(ε)) (``transport``).
Applied elementwise, the same field models data with independent coordinates (one component =
Gaussian data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .path import expand_time

_BISECTION_STEPS = 100


def normal_cdf(x: Tensor) -> Tensor:
    """Φ(x).  (...) -> (...)"""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@dataclass(frozen=True)
class GaussianMixture1D:
    """Σ_k weights[k]·N(means[k], stds[k]²); weights are normalised; computations in float64."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self):
        if not len(self.weights) == len(self.means) == len(self.stds) >= 1:
            raise ValueError("weights, means and stds must be non-empty and of equal length")
        if min(self.stds) <= 0 or min(self.weights) <= 0:
            raise ValueError(f"stds and weights must be > 0, got stds={self.stds}, weights={self.weights}")

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (K,) weights, means, stds as float64 on like's device."""
        kw = dict(dtype=torch.float64, device=like.device)
        w = torch.tensor(self.weights, **kw)
        return w / w.sum(), torch.tensor(self.means, **kw), torch.tensor(self.stds, **kw)

    @property
    def mean(self) -> float:
        w = torch.tensor(self.weights, dtype=torch.float64)
        return float((w / w.sum() * torch.tensor(self.means, dtype=torch.float64)).sum())

    @property
    def variance(self) -> float:
        w, mu, s = self._params(torch.empty(0))
        return float((w * (s.square() + mu.square())).sum()) - self.mean**2

    def cdf(self, x: Tensor) -> Tensor:
        """F(x) = Σ π_k Φ((x − μ_k)/s_k).  (...) -> (...) float64"""
        w, mu, s = self._params(x)
        return (w * normal_cdf((x.double()[..., None] - mu) / s)).sum(-1)

    def quantile(self, u: Tensor) -> Tensor:
        """F⁻¹(u) by bisection.  (...) in (0, 1) -> (...) float64"""
        _, mu, s = self._params(u)
        lo = torch.full(u.shape, float((mu - 40 * s).min()), dtype=torch.float64, device=u.device)
        hi = torch.full_like(lo, float((mu + 40 * s).max()))
        u = u.double()
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            below = self.cdf(mid) < u
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def transport(self, noise: Tensor) -> Tensor:
        """The exact endpoint x_0 of the ODE started at z_1 = noise: F⁻¹(Φ(ε)).  (...) -> (...) float64"""
        return self.quantile(normal_cdf(noise.double()))

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """(n,) float64 draws from the mixture."""
        w, mu, s = self._params(torch.empty(0))
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        return mu[k] + s[k] * torch.randn(n, generator=generator, dtype=torch.float64)

    def velocity(self, z: Tensor, t: Tensor, *, drop_condition: Tensor | None = None) -> Tensor:
        """Exact v(z, t) = E[ε − x | z_t = z].  z: (B, ...); t: (B,) -> (B, ...) in z's dtype.

        ``drop_condition`` is accepted (and ignored: the field is unconditional) so that this method
        is a valid ``velocity_fn`` for ``sample``.
        """
        w, mu, s = self._params(z)
        zz = z.double()[..., None]
        tt = expand_time(t, z).double()[..., None]
        m = (1 - tt) * mu
        var = (1 - tt).square() * s.square() + tt.square()
        logits = w.log() - 0.5 * var.log() - 0.5 * (zz - m).square() / var
        slope = (tt - (1 - tt) * s.square()) / var
        v = (torch.softmax(logits, dim=-1) * (slope * (zz - m) - mu)).sum(-1)
        return v.to(z.dtype)
