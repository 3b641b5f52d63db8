import warnings

import pytest
import torch

from seqrender.attention.viewtime import reference_viewtime, viewtime_attention
from seqrender.attention.viewtime.flex import flex_viewtime

from attention_testing import random_viewtime_case

# (batch, q heads, kv heads, V, T, S, d, registers, frame mask)
CASES = [(1, 2, 2, 2, 3, 4, 8, 0, False), (2, 4, 2, 3, 2, 5, 8, 1, True), (1, 4, 1, 1, 3, 7, 8, 2, True)]


def _forward_pair(case, dtype, **kwargs):
    batch, heads, kv, views, times, tokens, dim, regs, with_fm = case
    tensors, fm = random_viewtime_case(4, batch, heads, kv, views, times, tokens, dim, regs, with_fm)
    q, k, v, *reg = (t.detach().to(dtype) for t in tensors)
    registers = tuple(reg) if reg else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flex_viewtime(q, k, v, views, times, registers=registers, frame_mask=fm, **kwargs)
    expected = reference_viewtime(*(t.detach() for t in tensors[:3]), views, times,
                                  registers=tuple(t.detach() for t in tensors[3:]) or None, frame_mask=fm)
    return out, expected


@pytest.mark.parametrize("case", CASES)
def test_flex_forward_matches_reference(case):
    out, expected = _forward_pair(case, torch.float64)
    torch.testing.assert_close(out, expected, equal_nan=True)


@pytest.mark.slow
def test_compiled_flex_forward_matches_reference():
    out, expected = _forward_pair(CASES[1], torch.float32, compile=True)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-4)


def test_flex_through_entry_point():
    q = torch.randn(1, 2, 2 * 2 * 3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = viewtime_attention(q, q, q, 2, 2, backend="flex")
    torch.testing.assert_close(out, viewtime_attention(q, q, q, 2, 2, backend="reference"))
