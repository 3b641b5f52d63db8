"""RoPE against the published RoFormer/Llama formulas, a dense reference and shift invariance."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrender.posenc import BlockTransform, Rotary, apply_rope, rope_angles, rope_frequencies


def llama_meta_interleaved(x, pos, base=10000.0):
    """Meta Llama: complex multiplication of adjacent channel pairs by exp(i·pos·base^(-2j/d))."""
    d = x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    cis = torch.polar(torch.ones(len(pos), d // 2, dtype=torch.float64), torch.outer(pos, inv))
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * cis).flatten(-2)


def llama_hf_half(x, pos, base=10000.0):
    """GPT-NeoX / HF Llama: x·cos + rotate_half(x)·sin with the frequencies repeated over halves."""
    d = x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    emb = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


@pytest.mark.parametrize("layout,formula", [("interleaved", llama_meta_interleaved), ("half", llama_hf_half)])
def test_rope_matches_published_formula(layout, formula):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64, generator=gen)
    pos = torch.arange(7, dtype=torch.float64) * 3.0
    ours = apply_rope(x, rope_angles(pos[:, None], (8,)), layout=layout)
    torch.testing.assert_close(ours, formula(x, pos))


def dense_rope(angles, d, start, layout):
    """(N, d, d) rotation matrices for per-token angles (N, n)."""
    n_tok, n = angles.shape
    m = torch.eye(d, dtype=torch.float64).repeat(n_tok, 1, 1)
    for i in range(n):
        a, b = (start + i, start + n + i) if layout == "half" else (start + 2 * i, start + 2 * i + 1)
        c, s = angles[:, i].cos(), angles[:, i].sin()
        m[:, a, a], m[:, a, b], m[:, b, a], m[:, b, b] = c, -s, s, c
    return m


def axial_angles_reference(pos, bands, base):
    """Per-axis 'lang' frequencies base^(-2i/d_a), d_a = 2·bands_a, written out per band."""
    cols = []
    for a, n in enumerate(bands):
        for i in range(n):
            cols.append(pos[:, a] * base ** (-2.0 * i / (2 * n)))
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("bands,start", [((3,), 0), ((2, 3), 4), ((1, 2, 3), 1)])
def test_axial_rope_subrange_matches_dense(layout, bands, start):
    gen = torch.Generator().manual_seed(1)
    d, n_tok = 20, 9
    pos = torch.rand(n_tok, len(bands), dtype=torch.float64, generator=gen) * 50  # fractional
    angles = rope_angles(pos, bands, base=100.0)
    torch.testing.assert_close(angles, axial_angles_reference(pos, bands, 100.0))
    x = torch.randn(2, 3, n_tok, d, dtype=torch.float64, generator=gen)
    want = torch.einsum("nij,bhnj->bhni", dense_rope(angles, d, start, layout), x)
    torch.testing.assert_close(apply_rope(x, angles, layout=layout, start=start), want)
    tr = BlockTransform(rotary=Rotary(angles[None], start=start, layout=layout))
    q, k, v = tr.transform_qkv(x, x[:, :1], x[:, :1])
    torch.testing.assert_close(q, want)
    torch.testing.assert_close(k, want[:, :1])
    assert v is not None and torch.equal(v, x[:, :1])


def test_frequency_families():
    torch.testing.assert_close(rope_frequencies(4, family="lang", base=16.0), torch.tensor([1.0, 0.5, 0.25, 0.125]))
    torch.testing.assert_close(rope_frequencies(3, family="pixel", max_freq=6.0), math.pi * torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(rope_frequencies(3, family="integer"), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="family"):
        rope_frequencies(3, family="ntk")


@pytest.mark.parametrize("family", ["lang", "pixel"])
def test_rope_attention_shift_invariant(family):
    gen = torch.Generator().manual_seed(2)
    n_tok, d = 12, 24
    pos = torch.rand(n_tok, 2, dtype=torch.float64, generator=gen) * 8
    q = torch.randn(1, 4, n_tok, d, dtype=torch.float64, generator=gen)
    k, v = torch.randn(2, 1, 2, n_tok, d, dtype=torch.float64, generator=gen)

    def attend(p):
        tr = BlockTransform(rotary=Rotary(rope_angles(p, (4, 6), family=family)[None], start=2, layout="half"))
        return F.scaled_dot_product_attention(*tr.transform_qkv(q, k, v), enable_gqa=True)

    ref = attend(pos)
    for shift in ([3.25, -1.5], [100.0, 7.125]):
        torch.testing.assert_close(attend(pos + torch.tensor(shift, dtype=torch.float64)), ref)
    assert (attend(pos * 1.5) - ref).abs().max() > 1e-3  # relative positions do matter


def test_rope_float16_and_validation():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 5, 8, generator=gen)
    angles = rope_angles(torch.arange(5.0)[:, None], (4,))
    out16 = apply_rope(x.half(), angles)
    assert out16.dtype == torch.float16
    torch.testing.assert_close(out16.float(), apply_rope(x, angles), atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="layout"):
        apply_rope(x, angles, layout="complex")
    with pytest.raises(ValueError, match="head_dim"):
        apply_rope(x, angles, start=2)
    with pytest.raises(ValueError, match="bands"):
        rope_angles(torch.zeros(5, 2), (4,))


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_gradients_match_finite_differences(layout):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    angles = torch.randn(3, 2, dtype=torch.float64, generator=gen, requires_grad=True)  # broadcast over (B, H)
    assert torch.autograd.gradcheck(lambda a, b: apply_rope(a, b, layout=layout, start=1), (x, angles))
