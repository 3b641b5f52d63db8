"""Kaleido and 4Real-Video-V2 on a CUDA GPU (skipped without one; `scripts/gpu_check.sh` runs them):
forward and parameter gradients on CUDA, in float32 and under bfloat16 autocast, against the same
weights in float64 on the CPU. 4Real's fused attention takes its `auto` backend there, the compiled
Triton kernel; on the CPU the dense reference."""

import pytest
import torch

from seqrender.models import FourReal, FourRealConfig, Kaleido
from seqrender.posenc import KINDS

import test_models_fourreal as fourreal
import test_models_kaleido as kaleido

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cast(x, device, dtype):
    """Floating tensors to (device, dtype); others (masks, indices) to device only."""
    if not torch.is_tensor(x):
        return x
    return x.to(device, dtype) if x.is_floating_point() else x.to(device)


def _output_and_grads(model: torch.nn.Module, args: tuple, kwargs: dict, *, autocast: bool = False):
    """Model output (float64, CPU) and {parameter name: gradient} of a fixed random projection of it."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = model(*args, **kwargs)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (out.float() * weight.to(out.device, torch.float32)).sum().backward()
    grads = {n: p.grad.detach().cpu().double() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach().cpu().double(), grads


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


def _compare(make, args: tuple, kwargs: dict) -> None:
    """make() -> model with fixed weights. float32 on CUDA matches float64 on the CPU closely;
    bfloat16 autocast on CUDA within a few per cent (relative L2 error of the output and of each
    gradient)."""
    cast = lambda device, dtype: ([_cast(a, device, dtype) for a in args],
                                  {k: _cast(v, device, dtype) for k, v in kwargs.items()})
    a64, k64 = cast("cpu", torch.float64)
    want, want_grads = _output_and_grads(make().double(), a64, k64)
    a32, k32 = cast("cuda", torch.float32)
    got, grads = _output_and_grads(make().cuda(), a32, k32)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    assert grads.keys() == want_grads.keys()
    for name in want_grads:
        assert _relative_error(grads[name], want_grads[name]) < 1e-3, name
    got, grads = _output_and_grads(make().cuda(), a32, k32, autocast=True)
    assert _relative_error(got, want) < 0.03
    for name in want_grads:
        assert torch.isfinite(grads[name]).all() and _relative_error(grads[name], want_grads[name]) < 0.1, name


@pytest.mark.parametrize("posenc", KINDS)
def test_kaleido_on_cuda_matches_float64_cpu(posenc):
    z, t, is_reference, intrinsics, extrinsics = kaleido.scene(torch.Generator().manual_seed(1))

    def make() -> Kaleido:
        return kaleido.make_model(posenc=posenc)

    _compare(make, (z, t), dict(is_reference=is_reference, intrinsics=intrinsics, extrinsics=extrinsics))


@pytest.mark.parametrize("attention", ["fused", "sequential", "parallel"])
def test_fourreal_on_cuda_matches_float64_cpu(attention):
    z, t, row, column = fourreal.inputs()
    assert FourRealConfig(attention=attention).backend == "auto"  # CUDA: Triton; CPU: an exact dense path

    def make() -> FourReal:
        return fourreal.make_model(attention=attention)

    _compare(make, (z, t), dict(row=row, column=column))
