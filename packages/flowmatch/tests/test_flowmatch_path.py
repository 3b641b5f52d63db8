import pytest
import torch

from seqrender.flowmatch import convert_prediction, interpolate, masked_mean, masked_mse, velocity_target

KINDS = ("velocity", "noise", "data")


def _triple(dtype, t_low=0.0, t_high=1.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 5, generator=g, dtype=dtype)
    eps = torch.randn(64, 3, 5, generator=g, dtype=dtype)
    t = t_low + (t_high - t_low) * torch.rand(64, generator=g, dtype=dtype)
    return x, eps, t


def test_interpolate_matches_definition_and_endpoints():
    x, eps, t = _triple(torch.float64)
    z = interpolate(x, eps, t)
    for b in (0, 7, 63):
        assert torch.allclose(z[b], (1 - t[b]) * x[b] + t[b] * eps[b], atol=0, rtol=1e-15)
    assert torch.equal(interpolate(x, eps, torch.zeros(64, dtype=torch.float64)), x)
    assert torch.equal(interpolate(x, eps, torch.ones(64, dtype=torch.float64)), eps)
    assert torch.equal(interpolate(x, eps, 1.0), eps)
    assert torch.equal(velocity_target(x, eps), eps - x)


def test_interpolate_rejects_bad_time_shape():
    x, eps, _ = _triple(torch.float32)
    for bad in (torch.rand(3), torch.rand(64, 2), torch.rand(3, 64)):  # wrong B, wrong V, not a leading shape
        with pytest.raises(ValueError, match="t must"):
            interpolate(x, eps, bad)


def test_interpolate_with_one_time_per_leading_index():
    """t (B, V) on x (B, V, ...): frame (b, v) is on the path at its own t[b, v] (per-frame noise levels)."""
    x, eps, _ = _triple(torch.float64)
    t = torch.rand(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = interpolate(x, eps, t)
    for b, v in ((0, 0), (7, 2), (63, 1)):
        assert torch.allclose(z[b, v], (1 - t[b, v]) * x[b, v] + t[b, v] * eps[b, v], atol=0, rtol=1e-15)
    same = t[:, :1].expand(64, 3)  # equal times per sample: the per-sample path
    assert torch.equal(interpolate(x, eps, same), interpolate(x, eps, t[:, 0]))
    truth = {"velocity": eps - x, "noise": eps, "data": x}
    for source in KINDS:
        out = convert_prediction(truth[source], z, t, source=source, target="data", eps=1e-12)
        assert torch.allclose(out, x, atol=1e-9), source


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_conversions_recover_the_true_quantities(dtype, tol):
    x, eps, t = _triple(dtype, 0.05, 0.95)
    z = interpolate(x, eps, t)
    truth = {"velocity": eps - x, "noise": eps, "data": x}
    for source in KINDS:
        for target in KINDS:
            got = convert_prediction(truth[source], z, t, source=source, target=target)
            assert torch.allclose(got, truth[target], atol=tol, rtol=tol), (source, target)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_conversions_round_trip(dtype, tol):
    x, pred, t = _triple(dtype, 0.01, 0.99)
    z = torch.randn_like(x)
    for source in KINDS:
        for target in KINDS:
            there = convert_prediction(pred, z, t, source=source, target=target)
            back = convert_prediction(there, z, t, source=target, target=source)
            scale = 1 / min(t.min(), 1 - t.max())  # one division by t or 1 - t amplifies rounding
            assert torch.allclose(back, pred, atol=tol * scale, rtol=tol * scale), (source, target)


def test_conversions_are_finite_at_the_endpoints():
    x, eps, _ = _triple(torch.float32)
    for t_end in (0.0, 1.0):
        t = torch.full((64,), t_end)
        z = interpolate(x, eps, t)
        for source in KINDS:
            for target in KINDS:
                assert torch.isfinite(convert_prediction(x, z, t, source=source, target=target)).all()
    # velocity -> data / noise need no division: exact at the endpoints
    t0 = torch.zeros(64)
    assert torch.equal(convert_prediction(eps - x, x, t0, source="velocity", target="data"), x)


def test_conversion_rejects_unknown_kind():
    x, eps, t = _triple(torch.float32)
    with pytest.raises(ValueError, match="source must be one of velocity, noise, data"):
        convert_prediction(x, x, t, source="score", target="data")
    with pytest.raises(ValueError, match="target must be one of"):
        convert_prediction(x, x, t, source="data", target="eps")


def test_masked_mse_averages_only_over_the_mask():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 5, 4, 3, 3, generator=g)
    target = torch.randn(2, 5, 4, 3, 3, generator=g)
    is_target = torch.tensor([[False, True, True, False, True], [True, False, False, False, False]])
    mask = is_target[:, :, None, None, None]
    expected = (pred - target)[is_target].square().mean()
    assert torch.allclose(masked_mse(pred, target, mask), expected, rtol=1e-6)
    # masked-out entries cannot leak in, even as NaN
    pred_nan = pred.masked_fill(~mask, float("nan"))
    assert torch.allclose(masked_mse(pred_nan, target, mask), expected, rtol=1e-6)


def test_masked_mean_of_empty_mask_is_zero_with_zero_grad():
    values = torch.randn(3, 4, requires_grad=True)
    out = masked_mean(values, torch.zeros(3, 1, dtype=torch.bool))
    out.backward()
    assert out.item() == 0.0 and torch.equal(values.grad, torch.zeros(3, 4))
