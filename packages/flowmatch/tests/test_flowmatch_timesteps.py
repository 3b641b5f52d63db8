import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from seqrender.flowmatch import (
    LogitNormalSampler,
    ModeSampler,
    ShiftedSampler,
    TimestepSampler,
    UniformSampler,
    make_timestep_sampler,
    shift_timesteps,
)

N = 100_000
KS_CRITICAL = 1.95 / math.sqrt(N)  # Kolmogorov distribution, alpha = 0.001


# Independent reference CDFs, written out from the formulas (numpy / stdlib only).
def uniform_cdf(t):
    return np.clip(t, 0, 1)


def logit_normal_cdf(mean, std):
    dist = NormalDist(mean, std)
    return lambda t: np.array([dist.cdf(math.log(v / (1 - v))) if 0 < v < 1 else float(v >= 1) for v in t])


def mode_cdf(scale):
    u = np.linspace(0, 1, 200_001)
    f = 1 - u - scale * (np.cos(np.pi * u / 2) ** 2 - 1 + u)  # decreasing from 1 to 0
    return lambda t: 1 - np.interp(t, f[::-1], u[::-1])  # P(f(U) <= t) = 1 - f^-1(t)


def shifted_cdf(base_cdf, sigma):
    return lambda y: base_cdf(y / (sigma - (sigma - 1) * y))


CASES = {
    "uniform": (UniformSampler(), uniform_cdf),
    "logit_normal(0,1)": (LogitNormalSampler(0.0, 1.0), logit_normal_cdf(0.0, 1.0)),
    "logit_normal(0.5,0.7)": (LogitNormalSampler(0.5, 0.7), logit_normal_cdf(0.5, 0.7)),
    "mode(0.8)": (ModeSampler(0.8), mode_cdf(0.8)),
    "mode(-0.6)": (ModeSampler(-0.6), mode_cdf(-0.6)),
    "mode(1.29)": (ModeSampler(1.29), mode_cdf(1.29)),
    "uniform+shift3": (ShiftedSampler(UniformSampler(), 3.0), shifted_cdf(uniform_cdf, 3.0)),
    "uniform+shift5": (ShiftedSampler(UniformSampler(), 5.0), shifted_cdf(uniform_cdf, 5.0)),
    "mode(0.8)+shift3": (ShiftedSampler(ModeSampler(0.8), 3.0), shifted_cdf(mode_cdf(0.8), 3.0)),
    "logit_normal+shift0.5": (
        ShiftedSampler(LogitNormalSampler(), 0.5),
        shifted_cdf(logit_normal_cdf(0.0, 1.0), 0.5),
    ),
}


def ks_statistic(samples: np.ndarray, cdf) -> float:
    x = np.sort(samples)
    f = cdf(x)
    i = np.arange(1, len(x) + 1)
    return float(max((i / len(x) - f).max(), (f - (i - 1) / len(x)).max()))


def _draw(sampler, seed=0, n=N, dtype=torch.float64):
    return sampler.sample(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", list(CASES))
def test_samples_follow_the_reference_cdf(name):
    sampler, ref_cdf = CASES[name]
    t = _draw(sampler)
    assert t.shape == (N,) and t.min() >= 0 and t.max() <= 1
    assert ks_statistic(t.numpy(), ref_cdf) < KS_CRITICAL
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    assert np.allclose(sampler.cdf(grid).numpy(), ref_cdf(grid.numpy()), atol=2e-6)


def test_ks_check_has_power():
    """The same test rejects a sampler against the wrong distribution (shift 3 vs unshifted)."""
    t = _draw(ShiftedSampler(ModeSampler(0.8), 3.0))
    assert ks_statistic(t.numpy(), mode_cdf(0.8)) > 20 * KS_CRITICAL


@pytest.mark.parametrize("name", list(CASES))
def test_pdf_is_the_derivative_of_the_reference_cdf(name):
    sampler, ref_cdf = CASES[name]
    t = np.linspace(0.01, 0.99, 99)
    h = 1e-4
    numeric = (ref_cdf(t + h) - ref_cdf(t - h)) / (2 * h)
    pdf = sampler.pdf(torch.from_numpy(t)).numpy()
    assert np.allclose(pdf, numeric, rtol=2e-3, atol=1e-4)
    fine = torch.linspace(0, 1, 20_001, dtype=torch.float64)
    assert abs(torch.trapezoid(sampler.pdf(fine), fine).item() - 1) < 2e-3


def test_float32_default_and_reproducible():
    s = make_timestep_sampler("kaleido")
    a = s.sample(16, generator=torch.Generator().manual_seed(3))
    b = s.sample(16, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert isinstance(s, TimestepSampler)


def test_shift_is_the_stated_bijection_of_the_unit_interval():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for sigma in (0.25, 1.0, 3.0, 5.0):
        m = shift_timesteps(t, sigma)
        assert m[0] == 0 and m[-1] == 1 and (m.diff() > 0).all()
        expected = torch.tensor([sigma * v / (1 + (sigma - 1) * v) for v in t.tolist()], dtype=torch.float64)
        assert torch.allclose(m, expected, rtol=1e-14, atol=0)
        assert torch.allclose(shift_timesteps(m, 1 / sigma), t, atol=1e-14)  # inverse = shift 1/σ
    assert shift_timesteps(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shift sigma"):
        shift_timesteps(t, 0.0)


def test_mode_zero_is_uniform():
    u = UniformSampler().sample(1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t = ModeSampler(0.0).sample(1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(t, 1 - u)
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(ModeSampler(0.0).pdf(grid), torch.ones(11, dtype=torch.float64))
    assert torch.allclose(ModeSampler(0.0).cdf(grid), grid, atol=1e-12)


def test_mode_keeps_positive_density_at_the_endpoints_unlike_logit_normal():
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert (ModeSampler(0.8).pdf(ends) > 0.3).all()  # 1 / (1 + s) at both ends
    assert torch.allclose(ModeSampler(0.8).pdf(ends), torch.full((2,), 1 / 1.8, dtype=torch.float64))
    assert torch.equal(LogitNormalSampler().pdf(ends), torch.zeros(2, dtype=torch.float64))


def test_factory_and_validation():
    assert make_timestep_sampler("kaleido") == ShiftedSampler(ModeSampler(0.8), 3.0)
    assert make_timestep_sampler("uniform", shift=3) == ShiftedSampler(UniformSampler(), 3)
    assert make_timestep_sampler("logit_normal", mean=0.5) == LogitNormalSampler(0.5, 1.0)
    assert make_timestep_sampler("mode") == ModeSampler(0.8)
    with pytest.raises(ValueError, match="uniform, logit_normal, mode, kaleido"):
        make_timestep_sampler("cosine")
    with pytest.raises(ValueError, match="unknown option"):
        make_timestep_sampler("uniform", scale=0.8)
    with pytest.raises(ValueError, match="scale must lie in"):
        ModeSampler(2.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        LogitNormalSampler(0.0, 0.0)


def test_shifted_density_at_the_endpoints():
    """p(y) = p_base(m⁻¹(y))·σ/(σ − (σ − 1)y)²: σ at y = 1 and 1/σ at y = 0 for a uniform base."""
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for sigma in (3.0, 5.0):
        got = ShiftedSampler(UniformSampler(), sigma).pdf(ends)
        assert torch.allclose(got, torch.tensor([1 / sigma, sigma], dtype=torch.float64))
    outside = torch.tensor([-0.1, 1.1], dtype=torch.float64)
    assert torch.equal(ShiftedSampler(ModeSampler(0.8), 3.0).pdf(outside), torch.zeros(2, dtype=torch.float64))
