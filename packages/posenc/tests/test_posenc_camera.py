"""CaPE/GTA pose blocks: dense reference, closed-form inverse, switch, gradients and float16."""

import pytest
import torch
import torch.nn.functional as F

from seqrender.posenc import (
    BlockTransform,
    PoseBlocks,
    Rotary,
    apply_pose_blocks,
    invert_se3,
    make_scene_encoding,
    random_se3,
)
from seqrender.posenc.camera import repeat_blocks


def test_invert_se3_matches_linalg():
    p = random_se3(3, 4, dtype=torch.float64)
    torch.testing.assert_close(invert_se3(p), torch.linalg.inv(p))


def test_pose_blocks_match_kronecker_reference():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 4, 4, dtype=torch.float64, generator=gen)  # any 4×4, not only SE(3)
    x = torch.randn(2, 3, 5, 12, dtype=torch.float64, generator=gen)
    dense = torch.stack([torch.stack([torch.block_diag(*[a[b, n].T] * 3) for n in range(5)]) for b in range(2)])
    torch.testing.assert_close(apply_pose_blocks(x, a), torch.einsum("bnij,bhnj->bhni", dense, x))


@pytest.mark.parametrize("op_batch", [1, 2])
def test_grouped_pose_blocks_match_kronecker_reference(op_batch):
    """(B|1, G, 4, 4) operators: block g acts on the N/G contiguous tokens of group g."""
    gen = torch.Generator().manual_seed(4)
    groups, n = 3, 2
    a = torch.randn(op_batch, groups, 4, 4, dtype=torch.float64, generator=gen)
    x = torch.randn(2, 3, groups * n, 12, dtype=torch.float64, generator=gen)
    dense = torch.stack([
        torch.stack([torch.block_diag(*[a[b, t // n].T] * 3) for t in range(groups * n)]) for b in range(op_batch)
    ])
    ref = torch.einsum("bnij,bhnj->bhni", dense.expand(2, -1, -1, -1), x)
    torch.testing.assert_close(apply_pose_blocks(x, a), ref)
    torch.testing.assert_close(apply_pose_blocks(x, repeat_blocks(a, 3)), ref)  # the fused 12×12 form
    with pytest.raises(ValueError, match="extrinsics"):
        apply_pose_blocks(x, a[:, :2].repeat(1, 2, 1, 1))  # G = 4 does not divide N = 6


@pytest.mark.parametrize("values", [False, True])
def test_camera_only_transform_switch(values):
    gen = torch.Generator().manual_seed(1)
    p = random_se3(1, 4, generator=gen, dtype=torch.float64)
    tr = BlockTransform(pose=PoseBlocks(p, start=4, repeats=2), values=values)
    x = torch.randn(2, 2, 4, 14, dtype=torch.float64, generator=gen)
    q, k, v = tr.transform_qkv(x, x, x)
    pinv = torch.linalg.inv(p[0])
    blocks = lambda m: torch.stack([torch.block_diag(torch.eye(4, dtype=torch.float64), mi, mi, torch.eye(2, dtype=torch.float64)) for mi in m])
    mul = lambda m, t: torch.einsum("nij,bhnj->bhni", blocks(m), t)
    torch.testing.assert_close(q, mul(p[0].transpose(-1, -2), x))
    torch.testing.assert_close(k, mul(pinv, x))
    torch.testing.assert_close(v, mul(pinv, x) if values else x)
    torch.testing.assert_close(tr.transform_out(x), mul(p[0], x) if values else x)
    if values:  # out ∘ v-map is the identity for a token attending only to itself
        torch.testing.assert_close(tr.transform_out(v), x)


def test_overlap_and_size_errors():
    p = random_se3(1, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match="overlap"):
        BlockTransform(rotary=Rotary(torch.zeros(1, 3, 4)), pose=PoseBlocks(p, start=4, repeats=1))
    tr = BlockTransform(pose=PoseBlocks(p, start=0, repeats=4))
    x = torch.zeros(1, 1, 3, 8)
    with pytest.raises(ValueError, match="head_dim"):
        tr.transform_qkv(x, x, x)


def gta_attention_loss(q, k, v, hw, ext):
    tr = make_scene_encoding("gta", q.shape[-1]).temporal(hw, ext, None)
    o = F.scaled_dot_product_attention(*tr.transform_qkv(q, k, v), enable_gqa=True)
    return tr.transform_out(o)


def test_gta_gradients_exact_and_finite():
    gen = torch.Generator().manual_seed(2)
    hw = torch.rand(1, 3, 2, dtype=torch.float64, generator=gen) * 6
    ext = random_se3(1, 3, generator=gen, dtype=torch.float64).requires_grad_()
    q = torch.randn(1, 2, 3, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    k, v = (torch.randn(1, 1, 3, 8, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda *a: gta_attention_loss(*a, hw, ext), (q, k, v))
    assert torch.autograd.gradcheck(lambda e: gta_attention_loss(q, k, v, hw, e), (ext,))
    grouped = random_se3(1, 1, generator=gen, dtype=torch.float64).requires_grad_()  # one pose, 3 tokens
    q16 = torch.randn(1, 2, 3, 16, dtype=torch.float64, generator=gen, requires_grad=True)  # fused 8×8 blocks
    k16, v16 = (torch.randn(1, 1, 3, 16, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda *a: gta_attention_loss(*a, hw, grouped), (q16, k16, v16))
    assert torch.autograd.gradcheck(lambda e: gta_attention_loss(q16, k16, v16, hw, e), (grouped,))
    q32 = q.detach().float().requires_grad_()
    gta_attention_loss(q32, k.detach().float(), v.detach().float(), hw.float(), ext.detach().float()).square().sum().backward()
    assert torch.isfinite(q32.grad).all()


def test_gta_float16_inputs():
    gen = torch.Generator().manual_seed(3)
    hw = torch.rand(2, 6, 2, generator=gen) * 6
    ext = random_se3(2, 6, dtype=torch.float32, generator=gen)
    tr = make_scene_encoding("gta", 32).temporal(hw, ext, None)
    x = torch.randn(2, 4, 6, 32, generator=gen)
    outs32 = tr.transform_qkv(x, x, x) + (tr.transform_out(x),)
    outs16 = tr.transform_qkv(x.half(), x.half(), x.half()) + (tr.transform_out(x.half()),)
    for a, b in zip(outs16, outs32):
        assert a.dtype == torch.float16
        torch.testing.assert_close(a.float(), b, atol=1e-2, rtol=1e-2)
