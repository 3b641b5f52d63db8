import math

import pytest
import torch

from seqrender.flowmatch import (
    EVALUATIONS_PER_STEP,
    SCHEDULE_NAMES,
    GaussianMixture1D,
    make_schedule,
    sample,
    trailing_schedule,
)

GAUSS = GaussianMixture1D((1.0,), (1.5,), (0.5,))
MIX = GaussianMixture1D((0.3, 0.7), (-2.0, 1.5), (0.3, 0.5))
SPLIT = -0.25  # between the two modes; true mass below it is 0.3 + 0.7·Φ(−3.5) ≈ 0.30016
STEPS = {"euler": 128, "heun": 32}  # stated budgets for the distribution checks below


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _stratified_noise(n, seed):
    """(n,) N(0, 1) draws, one per probability stratum [i/n, (i + 1)/n), shuffled: random, but with
    almost no Monte Carlo error in the moments, so the checks below measure the solver."""
    g = torch.Generator().manual_seed(seed)
    u = (torch.arange(n) + torch.rand(n, generator=g)) / n
    return torch.special.ndtri(u)[torch.randperm(n, generator=g)]


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES + ("linspace+shift3",))
def test_gaussian_data_is_reproduced(solver, schedule):
    """N(1.5, 0.5²) data, 500 draws of 8 dims: mean within 0.01, std within 5 %."""
    name, _, shift = schedule.partition("+shift")
    ts = make_schedule(name, STEPS[solver], shift=float(shift or 1))
    x = sample(GAUSS.velocity, _stratified_noise(4000, seed=0).reshape(500, 8), ts, solver=solver)
    assert abs(x.mean().item() - 1.5) < 0.01
    assert abs(x.std().item() / 0.5 - 1) < 0.05


def _mixture_stats(y):
    low, high = y[y < SPLIT], y[y >= SPLIT]
    return low.numel() / y.numel(), low.mean().item(), low.std().item(), high.mean().item(), high.std().item()


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_gaussian_mixture_is_reproduced(solver, schedule):
    """4000 draws: weight within 0.005, component means within 0.03, component stds within 6 %."""
    noise = _stratified_noise(4000, seed=1)
    weight, mean_low, std_low, mean_high, std_high = _mixture_stats(
        sample(MIX.velocity, noise, make_schedule(schedule, STEPS[solver]), solver=solver)
    )
    assert abs(weight - 0.30016) < 0.005
    assert abs(mean_low + 2.0) < 0.03 and abs(mean_high - 1.5) < 0.03
    assert abs(std_low / 0.3 - 1) < 0.06 and abs(std_high / 0.5 - 1) < 0.06


def test_distribution_check_can_fail():
    """Too few Euler steps visibly distort the mixture, so the tolerances above mean something."""
    y = sample(MIX.velocity, _stratified_noise(4000, seed=1), make_schedule("linear_quadratic", 4))
    weight, mean_low, std_low, mean_high, std_high = _mixture_stats(y)
    assert abs(mean_low + 2.0) > 0.03 or abs(std_low / 0.3 - 1) > 0.06 or abs(std_high / 0.5 - 1) > 0.06


def _trajectory_error(field, exact, schedule, solver, n):
    eps = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)
    x = sample(field.velocity, eps, make_schedule(schedule, n, dtype=torch.float64), solver=solver)
    return (x - exact(eps)).abs().max().item()


# Step counts from which the error is in its asymptotic regime (the linear-quadratic schedule spends
# half its steps near t = 1, so its large late steps need more of them before Heun's h² term dominates).
ORDER_STEPS = {"euler": {"default": 32}, "heun": {"default": 64, "linear_quadratic": 128}}
ORDER_TOLERANCE = {"euler": 0.15, "heun": 0.25}


@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
@pytest.mark.parametrize(
    "field, exact",
    [(GAUSS, lambda e: 1.5 + 0.5 * e), (MIX, MIX.transport)],  # exact ODE endpoints
    ids=["gaussian", "mixture"],
)
@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2)])
def test_convergence_order(schedule, field, exact, solver, order):
    """Error of single float64 trajectories vs the exact solution halves ``order`` times per doubling
    of n: observed order within 0.15 (Euler) / 0.25 (Heun)."""
    n = ORDER_STEPS[solver].get(schedule, ORDER_STEPS[solver]["default"])
    coarse = _trajectory_error(field, exact, schedule, solver, n)
    fine = _trajectory_error(field, exact, schedule, solver, 2 * n)
    slope = math.log2(coarse / fine)
    assert abs(slope - order) < ORDER_TOLERANCE[solver], slope


class RecordingField:
    """A conditional field v = cond(z, t) or uncond(z, t) that logs every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, z, t, *, drop_condition):
        self.calls.append((z.clone(), t.clone(), drop_condition.clone()))
        tt = t.reshape(-1, *([1] * (z.ndim - 1)))
        return torch.where(drop_condition.reshape(tt.shape), -0.5 * z, torch.sin(z) + tt * z + 1.0)


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_cfg_batches_cond_and_uncond_into_one_call(solver):
    scale, n, noise = 1.5, 6, _noise(3, 4, 5)
    field = RecordingField()
    got = sample(field, noise, trailing_schedule(n), solver=solver, guidance_scale=scale)
    assert len(field.calls) == n * EVALUATIONS_PER_STEP[solver]
    for z, t, drop in field.calls:
        assert z.shape == (6, 4, 5) and t.shape == (6,)
        assert torch.equal(drop, torch.tensor([False] * 3 + [True] * 3))
        assert torch.equal(z[:3], z[3:]) and torch.equal(t[:3], t[3:])

    # reference: separate conditional and unconditional calls
    def guided(z, t, *, drop_condition):
        cond = field(z, t, drop_condition=torch.zeros(3, dtype=torch.bool))
        uncond = field(z, t, drop_condition=torch.ones(3, dtype=torch.bool))
        return uncond + scale * (cond - uncond)

    ref = sample(guided, noise, trailing_schedule(n), solver=solver)
    assert torch.allclose(got, ref, atol=1e-6)


def test_no_guidance_is_a_single_conditional_pass():
    field = RecordingField()
    sample(field, _noise(3, 4), trailing_schedule(4), guidance_scale=1.0)
    assert len(field.calls) == 4
    assert all(z.shape == (3, 4) and not drop.any() for z, _, drop in field.calls)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_keep_mask_holds_references_exactly(solver, scale):
    noise, clean = _noise(2, 5, 3, seed=2), _noise(2, 5, 3, seed=3)
    is_reference = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    keep = is_reference[:, :, None]
    field = RecordingField()
    out = sample(field, noise, trailing_schedule(5), solver=solver, guidance_scale=scale, clean=clean, keep_mask=keep)
    assert torch.equal(out[is_reference], clean[is_reference])
    for z, _, _ in field.calls:  # the model always sees the references clean
        for half in z.chunk(2) if scale != 1.0 else (z,):
            assert torch.equal(half[is_reference], clean[is_reference])
    # the targets are integrated: for this elementwise field they match an unmasked run
    free = sample(RecordingField(), noise, trailing_schedule(5), solver=solver, guidance_scale=scale)
    assert torch.allclose(out[~is_reference], free[~is_reference], atol=1e-6)
    assert not torch.allclose(out[~is_reference], noise[~is_reference])


def test_callback_and_progress():
    seen = []
    ts = make_schedule("linear_quadratic", 7)
    out = sample(GAUSS.velocity, _noise(4, 2), ts, callback=lambda i, t, z: seen.append((i, t, z)), progress=True)
    assert [i for i, _, _ in seen] == list(range(7))
    assert [t for _, t, _ in seen] == pytest.approx(ts[1:].tolist())
    assert torch.equal(seen[-1][2], out)


def test_sample_errors():
    noise = _noise(2, 3)
    with pytest.raises(ValueError, match="choose one of euler, heun"):
        sample(GAUSS.velocity, noise, trailing_schedule(3), solver="rk4")
    with pytest.raises(ValueError, match="schedule must have shape"):
        sample(GAUSS.velocity, noise, torch.ones(1))
    with pytest.raises(ValueError, match="clean and keep_mask"):
        sample(GAUSS.velocity, noise, trailing_schedule(3), clean=noise)
