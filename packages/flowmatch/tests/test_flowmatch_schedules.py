import numpy as np
import pytest
import torch

from seqrender.flowmatch import (
    SCHEDULE_NAMES,
    linear_quadratic_schedule,
    linspace_schedule,
    make_schedule,
    shift_schedule,
    trailing_schedule,
)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("n", [1, 2, 3, 10, 28, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_schedule_shape_endpoints_and_monotone(name, n, shift):
    ts = make_schedule(name, n, shift=shift)
    assert ts.shape == (n + 1,) and ts.dtype == torch.float32
    assert ts[0].item() == 1.0 and ts[-1].item() == 0.0
    assert (ts.diff() < 0).all()


def lq_reference(n, tau, linear):
    """Independent derivation: s = 1 − t is linear (slope τ/L) up to i = L, then the quadratic that is
    C¹ at L and reaches s = 1 at i = n."""
    system = np.array([[linear**2, linear, 1.0], [2.0 * linear, 1.0, 0.0], [n**2, n, 1.0]])
    a, b, c = np.linalg.solve(system, np.array([tau, tau / linear, 1.0]))
    s = [tau * i / linear if i < linear else a * i * i + b * i + c for i in range(n + 1)]
    return 1 - np.array(s)


@pytest.mark.parametrize("n, tau", [(2, 0.025), (7, 0.025), (28, 0.025), (50, 0.025), (64, 0.1)])
def test_linear_quadratic_matches_independent_formula(n, tau):
    ts = linear_quadratic_schedule(n, threshold_noise=tau, dtype=torch.float64)
    assert np.allclose(ts.numpy(), lq_reference(n, tau, n // 2), atol=1e-12)
    assert np.allclose(
        linear_quadratic_schedule(n, tau, linear_steps=n // 3 or 1, dtype=torch.float64).numpy(),
        lq_reference(n, tau, n // 3 or 1),
        atol=1e-12,
    )


def test_linear_quadratic_small_cases_by_hand():
    assert torch.allclose(linear_quadratic_schedule(2, dtype=torch.float64), torch.tensor([1.0, 0.975, 0.0], dtype=torch.float64))
    assert torch.equal(linear_quadratic_schedule(1), torch.tensor([1.0, 0.0]))
    # first half: uniform steps of τ/L just below t = 1
    ts = linear_quadratic_schedule(50, dtype=torch.float64)
    assert torch.allclose(ts[:26], 1 - 0.025 * torch.arange(26, dtype=torch.float64) / 25)


def test_linspace_and_trailing_readings():
    n = 50
    lin = linspace_schedule(n, dtype=torch.float64)
    expected = [1 - k / 1000 for k in np.linspace(0, 999, n)] + [0.0]
    assert np.allclose(lin.numpy(), expected, atol=1e-12)
    trail = trailing_schedule(n, dtype=torch.float64)
    assert np.allclose(trail.numpy(), [1 - i / n for i in range(n + 1)], atol=1e-12)
    # grid index (from the noise end) of the last evaluation: 999 for linspace, 980 for trailing
    assert round(1000 * (1 - lin[-2].item())) == 999
    assert round(1000 * (1 - trail[-2].item())) == 980


def test_shift_schedule_formula():
    ts = trailing_schedule(10, dtype=torch.float64)
    sigma = 3.0
    expected = [sigma * t / (1 + (sigma - 1) * t) for t in ts.tolist()]
    assert np.allclose(shift_schedule(ts, sigma).numpy(), expected, atol=1e-15)
    assert torch.equal(make_schedule("trailing", 10, shift=3.0, dtype=torch.float64), shift_schedule(ts, 3.0))


def test_schedule_errors():
    with pytest.raises(ValueError, match="linspace, trailing, linear_quadratic"):
        make_schedule("cosine", 10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="number of steps n"):
            make_schedule("linspace", bad)
    with pytest.raises(ValueError, match="threshold_noise"):
        linear_quadratic_schedule(10, threshold_noise=1.5)
    with pytest.raises(ValueError, match="linear_steps"):
        linear_quadratic_schedule(10, linear_steps=10)
