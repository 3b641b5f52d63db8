import pytest
import torch
from einops import rearrange

from seqrender.attention import Attention
from seqrender.attention.viewtime import (
    ViewTimeAttention,
    decomposed_viewtime,
    pattern_density,
    reference_viewtime,
    viewtime_attention,
    viewtime_frame_mask,
    viewtime_mask,
)

from attention_testing import (
    AngleRotation,
    brute_force_viewtime_mask,
    dense_attention,
    output_and_grads,
    random_viewtime_case,
)

# (batch, q heads, kv heads, V, T, S, d, registers, frame mask)
CASES = [
    (1, 2, 2, 2, 3, 4, 8, 0, False),
    (2, 4, 2, 3, 2, 5, 8, 1, False),
    (1, 6, 2, 3, 4, 3, 4, 2, True),
    (2, 4, 1, 1, 3, 4, 8, 1, True),
    (1, 2, 1, 4, 1, 3, 8, 0, True),
]


@pytest.mark.parametrize("views,times,tokens", [(2, 3, 2), (3, 3, 1), (1, 4, 2)])
def test_mask_matches_brute_force(views, times, tokens):
    fm = torch.rand(2, views * times, views * times) < 0.5
    expected = brute_force_viewtime_mask(views, times, tokens, fm)
    mask = viewtime_mask(views, times, tokens, frame_mask=fm, num_registers=2)
    assert mask.shape == (2, 1, expected.shape[1], expected.shape[2] + 2)
    assert torch.equal(mask[:, 0, :, :-2], expected) and mask[..., -2:].all()
    plain = viewtime_mask(views, times, tokens)[0, 0]
    assert plain.float().mean().item() == pytest.approx(pattern_density(views, times))
    assert torch.equal(viewtime_frame_mask(views, times), brute_force_viewtime_mask(views, times, 1)[0])


@pytest.mark.parametrize("case", CASES)
def test_reference_matches_explicit_softmax(case):
    batch, heads, kv, views, times, tokens, dim, regs, with_fm = case
    tensors, fm = random_viewtime_case(0, batch, heads, kv, views, times, tokens, dim, regs, with_fm)
    q, k, v, *reg = tensors
    mask = brute_force_viewtime_mask(views, times, tokens, fm)[:, None]
    if reg:
        k = torch.cat([k, reg[0].permute(1, 0, 2).expand(batch, -1, -1, -1)], dim=2)
        v = torch.cat([v, reg[1].permute(1, 0, 2).expand(batch, -1, -1, -1)], dim=2)
        mask = torch.cat([mask.expand(batch, -1, -1, -1), torch.ones(batch, 1, mask.shape[2], regs, dtype=torch.bool)], -1)
    expected = dense_attention(q, k, v, mask)
    out = reference_viewtime(*tensors[:3], views, times, registers=tuple(reg) or None, frame_mask=fm)
    torch.testing.assert_close(out, expected, equal_nan=True)


def _assert_matches_reference(fn, case, dtype=torch.float64, **tol):
    batch, heads, kv, views, times, tokens, dim, regs, with_fm = case
    tensors, fm = random_viewtime_case(1, batch, heads, kv, views, times, tokens, dim, regs, with_fm)
    expected, expected_grads = output_and_grads(reference_viewtime, tensors, fm, views, times)
    cast = [t.detach().to(dtype).requires_grad_() for t in tensors]
    out, grads = output_and_grads(fn, cast, fm, views, times)
    torch.testing.assert_close(out.double(), expected, equal_nan=True, **tol)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double().nan_to_num(), want.nan_to_num(), **tol)


@pytest.mark.parametrize("private_ops", [True, False], ids=["flash_cpu", "public"])
@pytest.mark.parametrize("case", CASES)
def test_decomposed_matches_reference(case, private_ops):
    def fn(*args, **kwargs):
        return decomposed_viewtime(*args, **kwargs, private_ops=private_ops)

    _assert_matches_reference(fn, case)


def test_decomposed_float32_default_backend():
    case = (2, 8, 2, 3, 3, 8, 16, 1, True)
    _assert_matches_reference(viewtime_attention, case, dtype=torch.float32, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("axis", ["views", "times"])
def test_grid_permutation_equivariance(axis):
    views, times, tokens = 3, 4, 2
    tensors, fm = random_viewtime_case(2, 1, 4, 2, views, times, tokens, 8, 1, True)
    perm = torch.randperm(views if axis == "views" else times)
    pattern = "b h (v t s) d -> b h v t s d"

    def permute(x):
        grid = rearrange(x, pattern, v=views, t=times)
        grid = grid[:, :, perm] if axis == "views" else grid[:, :, :, perm]
        return rearrange(grid, "b h v t s d -> b h (v t s) d")

    frames = torch.arange(views * times).reshape(views, times)
    frame_perm = (frames[perm] if axis == "views" else frames[:, perm]).flatten()
    q, k, v, rk, rv = (t.detach() for t in tensors)
    out = viewtime_attention(q, k, v, views, times, registers=(rk, rv), frame_mask=fm)
    out_perm = viewtime_attention(permute(q), permute(k), permute(v), views, times, registers=(rk, rv),
                                  frame_mask=fm[:, frame_perm][:, :, frame_perm])
    torch.testing.assert_close(out_perm, permute(out))


def test_module_matches_masked_core_attention():
    torch.manual_seed(3)
    views, times, height, width = 2, 3, 2, 2
    layer = ViewTimeAttention(16, 4, 2, num_registers=1).double()
    core = Attention(16, 4, 2, num_registers=1).double()
    core.load_state_dict(layer.attn.state_dict())
    x = torch.randn(2, views, times, height, width, 16, dtype=torch.float64)
    fm = torch.rand(2, views * times, views * times) < 0.7
    angles = torch.rand(2, views * times * height * width, dtype=torch.float64) * 6.3
    out = layer(x, transform=AngleRotation(angles), frame_mask=fm)
    mask = brute_force_viewtime_mask(views, times, height * width, fm)[:, None]
    flat = core(x.reshape(2, -1, 16), transform=AngleRotation(angles), attn_mask=mask)
    torch.testing.assert_close(out, flat.reshape(x.shape))


def test_bad_arguments():
    q = torch.randn(1, 2, 12, 4)
    with pytest.raises(ValueError, match="reference, decomposed, flex, triton"):
        viewtime_attention(q, q, q, 2, 3, backend="dense")
    with pytest.raises(ValueError, match="backend"):
        ViewTimeAttention(8, 2, backend="fast")
    with pytest.raises(ValueError, match="views"):
        viewtime_attention(q, q, q, 5, 1)
    with pytest.raises(ValueError, match="frame_mask"):
        viewtime_attention(q, q, q, 2, 3, frame_mask=torch.ones(1, 6, 6))
    with pytest.raises(ValueError, match="heads"):
        viewtime_attention(q, q[:, :1].expand(1, 3, 12, 4), q[:, :1].expand(1, 3, 12, 4), 2, 3)
