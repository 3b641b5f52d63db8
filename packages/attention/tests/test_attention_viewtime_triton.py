"""The Triton kernel under the CPU interpreter, or compiled where a CUDA GPU is present (TRITON_INTERPRET=1
must be set before the kernel module is imported; the interpreter takes ~0.2 s per 256-token head,
so shapes stay tiny)."""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():  # on a GPU the compiled kernel runs (test_attention_viewtime_cuda.py too)
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is an optional extra: pip install seqrender-attention[triton]")
if "seqrender.attention.viewtime.triton_kernel" in sys.modules and not torch.cuda.is_available():
    pytest.skip("triton_kernel was imported before TRITON_INTERPRET=1 was set", allow_module_level=True)

from seqrender.attention.viewtime import reference_viewtime  # noqa: E402
from seqrender.attention.viewtime.triton_kernel import triton_viewtime  # noqa: E402

from attention_testing import output_and_grads, random_viewtime_case  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (batch, q heads, kv heads, V, T, S, d, registers, frame mask, block): S not a multiple of the block
CASES = [
    (1, 2, 1, 2, 3, 5, 8, 1, True, 16),
    (2, 2, 2, 2, 2, 7, 12, 0, False, 16),
    (1, 2, 1, 2, 2, 18, 16, 2, False, 16),
]


def _run(case, dtype, tol):
    batch, heads, kv, views, times, tokens, dim, regs, with_fm, block = case
    tensors, fm = random_viewtime_case(5, batch, heads, kv, views, times, tokens, dim, regs, with_fm)
    expected, expected_grads = output_and_grads(reference_viewtime, tensors, fm, views, times)
    cast = [t.detach().to(DEVICE, dtype).requires_grad_() for t in tensors]

    def fn(*args, **kwargs):
        return triton_viewtime(*args, **kwargs, block_m=block, block_n=block)

    out, grads = output_and_grads(fn, cast, None if fm is None else fm.to(DEVICE), views, times)
    torch.testing.assert_close(out.cpu().double(), expected, **tol)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.cpu().double(), want, **tol)


@pytest.mark.parametrize("case", CASES)
def test_triton_float32_matches_reference(case):
    _run(case, torch.float32, dict(atol=2e-5, rtol=1e-4))


def test_triton_float16_matches_reference():
    _run(CASES[0], torch.float16, dict(atol=5e-3, rtol=5e-3))
