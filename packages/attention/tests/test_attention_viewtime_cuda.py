"""The view-time kernels compiled for a CUDA GPU (skipped without one; `scripts/gpu_check.sh` runs
them): Triton and torch.compile'd FlexAttention, forward and backward, against the float64 reference
on the CPU, at sizes the CPU interpreter cannot afford (64-token frames, d = 64, partial blocks)
and in the precisions training uses (float32, bfloat16 and float16 as under autocast)."""

import warnings
from functools import partial

import pytest
import torch

if not torch.cuda.is_available():  # before anything imports triton (the interpreted tests set TRITON_INTERPRET)
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from seqrender.attention.viewtime import reference_viewtime, viewtime_attention  # noqa: E402
from seqrender.attention.viewtime.api import resolve_backend, triton_available  # noqa: E402
from seqrender.attention.viewtime.flex import flex_viewtime  # noqa: E402

from attention_testing import output_and_grads, random_viewtime_case  # noqa: E402

# (batch, q heads, kv heads, V, T, S, d, registers, frame mask): GQA with registers and a frame mask;
# S = 37 leaves a partial block in every frame
CASES = [(2, 8, 2, 3, 4, 64, 64, 2, True), (1, 4, 4, 4, 4, 37, 32, 0, False)]
# float32 is exact in both kernels (IEEE products): elementwise. Half precisions round q, k, v, the
# output and each gradient (register gradients sum over every query): relative L2 error, about 2× the
# largest error of the dense reference run in that precision on the CPU (bf16 0.0068, fp16 0.00084).
RELATIVE_L2 = {torch.bfloat16: 1.5e-2, torch.float16: 2e-3}
DTYPES = [torch.float32, *RELATIVE_L2]


def _check(attend, case, dtype) -> None:
    """attend(q, k, v, views, times, registers=, frame_mask=) on CUDA in `dtype` vs the float64 reference."""
    batch, heads, kv, views, times, tokens, dim, regs, with_fm = case
    tensors, fm = random_viewtime_case(7, batch, heads, kv, views, times, tokens, dim, regs, with_fm)
    expected, expected_grads = output_and_grads(reference_viewtime, tensors, fm, views, times)
    on_gpu = [t.detach().to("cuda", dtype).requires_grad_() for t in tensors]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, grads = output_and_grads(attend, on_gpu, None if fm is None else fm.cuda(), views, times)
    assert out.dtype == dtype and out.device.type == "cuda"
    names = ("output", "dq", "dk", "dv", "d register k", "d register v")
    for name, got, want in zip(names, (out, *grads), (expected, *expected_grads)):
        got = got.cpu().double()
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3, equal_nan=True, msg=lambda m: f"{name}: {m}")
        else:
            finite = torch.isfinite(want)  # a frame that sees nothing: NaN in every backend
            assert torch.equal(torch.isfinite(got), finite), name
            error = (got[finite] - want[finite]).norm() / want[finite].norm()
            assert error < RELATIVE_L2[dtype], f"{name}: relative L2 error {error:.2e}"


@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_triton_on_cuda_matches_float64_reference(case, dtype):
    _check(partial(viewtime_attention, backend="triton"), case, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_flex_on_cuda_matches_float64_reference(case, dtype, compile):
    """Compiled FlexAttention is the fused Triton kernel torch generates, with a backward on CUDA
    (there is none on CPU); eager runs the same maths through torch ops."""
    _check(partial(flex_viewtime, compile=compile), case, dtype)


@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_auto_backend_picks_triton_on_cuda():
    q = torch.zeros(1, 2, 2 * 2 * 4, 16, device="cuda")
    assert resolve_backend("auto", q, 2, 2) == "triton"
