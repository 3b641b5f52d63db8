import pytest
import torch
from einops import rearrange

from seqrender.attention import Attention, PositionalHook

from attention_testing import AngleRotation, dense_attention


def manual_forward(layer: Attention, x, mask=None, hook=None):
    """Attention written out with explicit float64 matmuls, independent of the layer's code path."""
    h, hk, d = layer.num_heads, layer.num_kv_heads, layer.head_dim
    q = rearrange(x @ layer.to_q.weight.T, "b n (h d) -> b h n d", h=h)
    kv = x @ layer.to_kv.weight.T
    k = rearrange(kv[..., : hk * d], "b n (h d) -> b h n d", h=hk)
    v = rearrange(kv[..., hk * d :], "b n (h d) -> b h n d", h=hk)
    if hook is not None:
        q, k, v = hook.transform_qkv(q, k, v)
    b, n = x.shape[:2]
    r = layer.register_k.shape[0]
    k = torch.cat([k, layer.register_k.permute(1, 0, 2).expand(b, -1, -1, -1)], dim=2)
    v = torch.cat([v, layer.register_v.permute(1, 0, 2).expand(b, -1, -1, -1)], dim=2)
    if mask is not None:
        mask = torch.cat([mask.expand(b, 1, n, n), torch.ones(b, 1, n, r, dtype=torch.bool)], dim=-1)
    o = dense_attention(q, k, v, mask)
    if hook is not None:
        o = hook.transform_out(o)
    return rearrange(o, "b h n d -> b n (h d)") @ layer.proj.weight.T


@pytest.mark.parametrize("heads,kv_heads,registers", [(4, 4, 1), (4, 2, 0), (6, 1, 3)])
def test_attention_matches_manual_float64(heads, kv_heads, registers):
    torch.manual_seed(0)
    layer = Attention(24, heads, kv_heads, num_registers=registers).double()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    mask = torch.rand(2, 1, 7, 7) < 0.6
    mask |= torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(layer(x), manual_forward(layer, x))
    torch.testing.assert_close(layer(x, attn_mask=mask), manual_forward(layer, x, mask))


def test_attention_hook_is_applied_in_order():
    torch.manual_seed(1)
    layer = Attention(16, 4, 2, num_registers=2).double()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    hook = AngleRotation(torch.rand(3, 5, dtype=torch.float64) * 6.3)
    assert isinstance(hook, PositionalHook)
    out = layer(x, transform=hook)
    assert hook.calls == [((3, 4, 5, 4), (3, 2, 5, 4), (3, 2, 5, 4))]
    torch.testing.assert_close(out, manual_forward(layer, x, hook=hook))


def test_global_rotation_is_invariant_without_registers():
    torch.manual_seed(2)
    layer = Attention(16, 2, num_registers=0).double()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    hook = AngleRotation(torch.full((1, 6), 0.7, dtype=torch.float64))
    torch.testing.assert_close(layer(x, transform=hook), layer(x))


def test_fully_masked_row_attends_only_registers():
    torch.manual_seed(3)
    layer = Attention(8, 2, 1, num_registers=1).double()
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 0, :] = False
    out = layer(x, attn_mask=mask)
    reg_v = layer.register_v[0].repeat_interleave(2, dim=0).reshape(-1)  # (Hq·d,) of the only key
    torch.testing.assert_close(out[0, 0], layer.proj.weight @ reg_v)


def test_qk_norm_and_float16_run_and_train():
    layer = Attention(16, 4, 2, qk_norm=True)
    x = torch.randn(2, 5, 16, requires_grad=True)
    layer(x).sum().backward()
    assert layer.register_k.grad is not None and x.grad.isfinite().all()
    out = layer.half()(x.detach().half())
    assert out.dtype == torch.float16 and out.isfinite().all()


@pytest.mark.parametrize(
    "kwargs,name",
    [({"num_heads": 5}, "num_heads"), ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads"),
     ({"num_heads": 4, "num_registers": -1}, "num_registers")],
)
def test_attention_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Attention(16, **kwargs)


def test_attention_rejects_float_mask():
    with pytest.raises(ValueError, match="attn_mask"):
        Attention(8, 2)(torch.randn(1, 3, 8), attn_mask=torch.ones(3, 3))
