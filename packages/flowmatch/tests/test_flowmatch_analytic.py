import math

import numpy as np
import torch

from seqrender.flowmatch import GaussianMixture1D

MIX = GaussianMixture1D((0.3, 0.7), (-2.0, 1.5), (0.3, 0.5))


def marginal_density(z, t, mix=MIX):
    """p_t(z) of z_t = (1 − t)x + tε, written out: Σ π_k N(z; (1 − t)μ_k, (1 − t)²s_k² + t²)."""
    total = 0.0
    for w, mu, s in zip(mix.weights, mix.means, mix.stds):
        var = (1 - t) ** 2 * s**2 + t**2
        total = total + w * np.exp(-((z - (1 - t) * mu) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    return total


def test_velocity_solves_the_continuity_equation():
    """∂p/∂t + ∂(p v)/∂z = 0; in 1-D with p v → 0 at −∞ this pins v down uniquely."""
    z = np.linspace(-4, 4, 161)
    h = 1e-5
    for t in (0.05, 0.3, 0.5, 0.8, 0.95):
        dp_dt = (marginal_density(z, t + h) - marginal_density(z, t - h)) / (2 * h)

        def flux(zz):
            v = MIX.velocity(torch.from_numpy(zz), torch.tensor(t, dtype=torch.float64)).numpy()
            return marginal_density(zz, t) * v

        div = (flux(z + h) - flux(z - h)) / (2 * h)
        assert np.abs(dp_dt + div).max() < 1e-5 * np.abs(dp_dt).max() + 1e-8, t


def test_velocity_at_the_endpoints():
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    # t = 0: z = x is independent of ε, so E[ε − x | z] = −z
    assert torch.allclose(MIX.velocity(z, torch.tensor(0.0, dtype=torch.float64)), -z, atol=1e-12)
    # t = 1: z = ε is independent of x, so E[ε − x | z] = z − E[x]
    assert torch.allclose(MIX.velocity(z, torch.tensor(1.0, dtype=torch.float64)), z - MIX.mean, atol=1e-12)


def test_cdf_quantile_and_moments():
    x = np.linspace(-6, 6, 120_001)
    pdf = marginal_density(x, 0.0)
    cdf_numeric = np.concatenate([[0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    grid = torch.from_numpy(x[::1000])
    assert np.allclose(MIX.cdf(grid).numpy(), cdf_numeric[::1000], atol=1e-7)
    u = torch.linspace(0.001, 0.999, 99, dtype=torch.float64)
    assert torch.allclose(MIX.cdf(MIX.quantile(u)), u, atol=1e-12)
    assert math.isclose(MIX.mean, 0.3 * -2.0 + 0.7 * 1.5)
    second = 0.3 * (0.09 + 4.0) + 0.7 * (0.25 + 2.25)
    assert math.isclose(MIX.variance, second - MIX.mean**2, rel_tol=1e-12)
    draws = MIX.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert abs(draws.mean().item() - MIX.mean) < 0.02 and abs(draws.var().item() / MIX.variance - 1) < 0.02


def test_transport_of_a_gaussian_is_affine():
    gauss = GaussianMixture1D((1.0,), (1.5,), (0.5,))
    eps = torch.linspace(-3, 3, 25, dtype=torch.float64)
    assert torch.allclose(gauss.transport(eps), 1.5 + 0.5 * eps, atol=1e-10)
