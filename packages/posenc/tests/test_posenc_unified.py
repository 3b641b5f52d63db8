"""Kaleido's unified encoding against a dense float64 block-diagonal reference and invariances."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrender.posenc import (
    IdentityTransform,
    PositionalTransform,
    SceneEncoding,
    grid_angles,
    make_scene_encoding,
    normalise_translations,
    random_se3,
)

D = 32


def rot2(theta):
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def dense_operator(theta_bands, pose, d):
    """d×d block-diagonal matrix: 2×2 rotations on adjacent pairs, then 4×4 copies of ``pose``."""
    m = torch.eye(d, dtype=torch.float64)
    for i, th in enumerate(theta_bands):
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = rot2(th)
    if pose is not None:
        for j in range(2 * len(theta_bands), d, 4):
            m[j:j + 4, j:j + 4] = pose
    return m


def band_frequency(i, n, family="geometric"):
    """Band i of n, written out from the posenc docs: the geometric family ½·16^(−i/(n−1)), or the
    wide family 2·64^(−i/(n−1))."""
    top, ratio = (0.5, 16.0) if family == "geometric" else (2.0, 64.0)
    return top * ratio ** (-i / max(n - 1, 1))


def expected_bands(hw, t, d, spatial, family="geometric"):
    """Angles from SPEC §1: n bands ω_i·θ of θ_h, θ_w (and θ_t) of the frequency `family`."""
    n = d // 4 if spatial else d // 8
    bands = [hw[a] * band_frequency(i, n, family) for a in (0, 1) for i in range(n)]
    if t is not None:
        bands += [t * band_frequency(i, d // 4, family) for i in range(d // 4)]
    return bands


def apply_dense(x, mats):
    """x: (B, H, N, d); mats: (B, N, d, d) -> mats @ x per token."""
    return torch.einsum("bnij,bhnj->bhni", mats, x)


def heads_first(b, h, n, d, *, gen, strided):
    """(b, h, n, d) float64 tensor; ``strided``: a view of a (b, n, h, d) projection, as in a layer."""
    if strided:
        return torch.randn(b, n, h, d, dtype=torch.float64, generator=gen).transpose(1, 2)
    return torch.randn(b, h, n, d, dtype=torch.float64, generator=gen)


@pytest.mark.parametrize("frequencies", ["geometric", "wide"])
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("kind", ["rope", "cape", "gta", "plucker", "gta_plucker"])
@pytest.mark.parametrize("data", ["3d", "video", "spatial"])
def test_unified_matches_dense_reference(kind, data, strided, frequencies):
    gen = torch.Generator().manual_seed(0)
    b, n = 2, 6
    hw = torch.rand(b, n, 2, dtype=torch.float64, generator=gen) * 2 * math.pi
    ext = random_se3(b, n, generator=gen, dtype=torch.float64) if data == "3d" else None
    times = torch.rand(b, n, dtype=torch.float64, generator=gen) * 2 * math.pi if data == "video" else None
    enc = make_scene_encoding(kind, D, frequencies=frequencies)
    if data == "spatial":
        hw = hw[:1].expand(b, n, 2)
        tr = enc.spatial(hw[0])
    else:
        tr = enc.temporal(hw, ext, times)
    camera = data == "3d" and kind in ("cape", "gta", "gta_plucker")
    gta = kind in ("gta", "gta_plucker")
    mq, mk, mo = (torch.empty(b, n, D, D, dtype=torch.float64) for _ in range(3))
    for i in range(b):
        for j in range(n):
            bands = expected_bands(hw[i, j].tolist(), None if times is None else times[i, j].item(), D,
                                   data == "spatial", frequencies)
            p = ext[i, j] if camera else None
            mq[i, j] = dense_operator(bands, None if p is None else p.T, D)
            mk[i, j] = dense_operator(bands, None if p is None else torch.linalg.inv(p), D)
            mo[i, j] = dense_operator([-a for a in bands], p, D)
    q, k, v = (heads_first(b, h, n, D, gen=gen, strided=strided) for h in (4, 2, 2))
    q2, k2, v2 = tr.transform_qkv(q, k, v)
    torch.testing.assert_close(q2, apply_dense(q, mq))
    torch.testing.assert_close(k2, apply_dense(k, mk))
    torch.testing.assert_close(v2, apply_dense(v, mk) if gta else v)
    torch.testing.assert_close(tr.transform_out(q), apply_dense(q, mo) if gta else q)


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("op_batch", [1, 2])
@pytest.mark.parametrize("kind", ["cape", "gta"])
def test_grouped_poses_match_dense_reference(kind, op_batch, strided):
    """Extrinsics (B'|1, G, 4, 4): pose g covers the n contiguous tokens [g·n, (g+1)·n)."""
    gen = torch.Generator().manual_seed(4)
    b, groups, n = 2, 3, 4
    hw = torch.rand(op_batch, groups * n, 2, dtype=torch.float64, generator=gen) * 2 * math.pi
    ext = random_se3(op_batch, groups, generator=gen, dtype=torch.float64)
    tr = make_scene_encoding(kind, D).temporal(hw, ext, None)
    mq, mk, mo = (torch.empty(op_batch, groups * n, D, D, dtype=torch.float64) for _ in range(3))
    for i in range(op_batch):
        for j in range(groups * n):
            bands, p = expected_bands(hw[i, j].tolist(), None, D, False), ext[i, j // n]
            mq[i, j] = dense_operator(bands, p.T, D)
            mk[i, j] = dense_operator(bands, torch.linalg.inv(p), D)
            mo[i, j] = dense_operator([-a for a in bands], p, D)
    mq, mk, mo = (m.expand(b, -1, -1, -1) for m in (mq, mk, mo))
    q, k, v = (heads_first(b, h, groups * n, D, gen=gen, strided=strided) for h in (4, 2, 2))
    q2, k2, v2 = tr.transform_qkv(q, k, v)
    torch.testing.assert_close(q2, apply_dense(q, mq))
    torch.testing.assert_close(k2, apply_dense(k, mk))
    torch.testing.assert_close(v2, apply_dense(v, mk) if kind == "gta" else v)
    torch.testing.assert_close(tr.transform_out(q), apply_dense(q, mo) if kind == "gta" else q)


@pytest.mark.parametrize("op_batch", [1, 2])
def test_grouped_poses_match_per_token_values_and_gradients(op_batch):
    gen = torch.Generator().manual_seed(5)
    enc = make_scene_encoding("gta", D)
    b, groups, n = 2, 3, 4
    hw = torch.rand(op_batch, groups * n, 2, dtype=torch.float64, generator=gen) * 2 * math.pi
    ext = random_se3(op_batch, groups, generator=gen, dtype=torch.float64)
    inputs = [torch.randn(b, h, groups * n, D, dtype=torch.float64, generator=gen) for h in (4, 2, 2)]
    outs, grads = [], []
    for per_token in (False, True):
        e = ext.clone().requires_grad_()
        qkv = [t.clone().requires_grad_() for t in inputs]
        poses = e.repeat_interleave(n, dim=1) if per_token else e
        out = gqa_attention(enc.temporal(hw, poses, None), *qkv)
        out.square().sum().backward()
        outs.append(out)
        grads.append([e.grad] + [t.grad for t in qkv])
    torch.testing.assert_close(outs[0], outs[1])
    for grouped, per_token in zip(*grads):
        torch.testing.assert_close(grouped, per_token)
    assert grads[0][0].abs().max() > 1e-6  # the pose gradient is not trivially zero


def test_grouped_poses_must_divide_tokens():
    enc = make_scene_encoding("gta", D)
    with pytest.raises(ValueError, match="extrinsics"):
        enc.temporal(torch.zeros(1, 10, 2), random_se3(1, 4, dtype=torch.float32), None)


def gqa_attention(tr, q, k, v):
    q, k, v = tr.transform_qkv(q, k, v)
    return tr.transform_out(F.scaled_dot_product_attention(q, k, v, enable_gqa=True))


def test_gta_attention_invariant_to_world_frame():
    gen = torch.Generator().manual_seed(1)
    enc = make_scene_encoding("gta", D)
    b, n = 2, 10
    hw = torch.rand(b, n, 2, dtype=torch.float64, generator=gen) * 2 * math.pi
    q = torch.randn(b, 4, n, D, dtype=torch.float64, generator=gen)
    k, v = torch.randn(2, b, 2, n, D, dtype=torch.float64, generator=gen)
    for _ in range(5):
        ext = random_se3(b, n, generator=gen, dtype=torch.float64)
        g = random_se3(b, 1, generator=gen, dtype=torch.float64)  # one change of world frame per scene
        ref = gqa_attention(enc.temporal(hw, ext, None), q, k, v)
        moved = gqa_attention(enc.temporal(hw, ext @ g, None), q, k, v)
        torch.testing.assert_close(moved, ref)
    # and the output does depend on the poses (the test can fail)
    other = gqa_attention(enc.temporal(hw, random_se3(b, n, generator=gen, dtype=torch.float64), None), q, k, v)
    assert (other - ref).abs().max() > 1e-3


def test_cape_logits_invariant_but_not_values():
    gen = torch.Generator().manual_seed(2)
    enc = make_scene_encoding("cape", D)
    b, n = 1, 8
    hw = torch.rand(b, n, 2, dtype=torch.float64, generator=gen) * 2 * math.pi
    q = torch.randn(b, 2, n, D, dtype=torch.float64, generator=gen)
    k, v = torch.randn(2, b, 1, n, D, dtype=torch.float64, generator=gen)
    for _ in range(5):
        ext = random_se3(b, n, generator=gen, dtype=torch.float64)
        g = random_se3(b, 1, generator=gen, dtype=torch.float64)
        qa, ka, va = enc.temporal(hw, ext, None).transform_qkv(q, k, v)
        qb, kb, vb = enc.temporal(hw, ext @ g, None).transform_qkv(q, k, v)
        torch.testing.assert_close(qa @ ka.transpose(-1, -2), qb @ kb.transpose(-1, -2))
        assert va is v and vb is v


def test_operators_with_batch_one_broadcast():
    gen = torch.Generator().manual_seed(3)
    enc = make_scene_encoding("gta", D)
    n = 5
    hw = torch.rand(1, n, 2, generator=gen) * 2 * math.pi
    ext = random_se3(1, n, dtype=torch.float32, generator=gen)
    q = torch.randn(3, 4, n, D, generator=gen)
    k, v = torch.randn(2, 3, 2, n, D, generator=gen)
    tr = enc.temporal(hw, ext, None)
    tr3 = enc.temporal(hw.expand(3, -1, -1), ext.expand(3, -1, -1, -1), None)
    for a, b in zip(tr.transform_qkv(q, k, v), tr3.transform_qkv(q, k, v)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(tr.transform_out(q), tr3.transform_out(q))


def test_none_and_protocols():
    enc = make_scene_encoding("none", D)
    assert isinstance(enc, SceneEncoding) and enc.input_channels == 0
    assert isinstance(enc.spatial(grid_angles(2, 2)), IdentityTransform)
    for kind in ("rope", "cape", "gta", "plucker", "gta_plucker"):
        enc = make_scene_encoding(kind, D)
        assert isinstance(enc.spatial(grid_angles(2, 3)), PositionalTransform)
        assert enc.input_channels == (6 if kind in ("plucker", "gta_plucker") else 0)


def test_input_features_shape_and_none():
    ext = random_se3(2, 3, dtype=torch.float32)
    k = torch.tensor([[4.0, 0, 2], [0, 4.0, 3], [0, 0, 1]]).expand(2, 3, 3, 3)
    feats = make_scene_encoding("plucker", D).input_features(k, ext, 6, 4)
    assert feats.shape == (2, 3, 6, 6, 4)
    torch.testing.assert_close(make_scene_encoding("gta_plucker", D).input_features(k, ext, 6, 4), feats)
    assert make_scene_encoding("gta", D).input_features(k, ext, 6, 4) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_scene_encoding("alibi", D)
    with pytest.raises(ValueError, match="head_dim"):
        make_scene_encoding("gta", 36)
    enc = make_scene_encoding("gta", D)
    with pytest.raises(ValueError, match="not both"):
        enc.temporal(torch.zeros(1, 2, 2), random_se3(1, 2, dtype=torch.float32), torch.zeros(1, 2))


def test_grid_angles_layout():
    a = grid_angles(2, 4)
    assert a.shape == (8, 2)
    torch.testing.assert_close(a[1], torch.tensor([0.0, math.pi / 2]))  # row-major: next column
    torch.testing.assert_close(a[4], torch.tensor([math.pi, 0.0]))  # next row
    assert a.min() >= 0 and a.max() < 2 * math.pi


def test_normalise_translations():
    ext = random_se3(3, 5, dtype=torch.float64)
    out = normalise_translations(ext)
    norms = out[..., :3, 3].norm(dim=-1)
    torch.testing.assert_close(norms.amax(-1), torch.ones(3, dtype=torch.float64))
    ratio = out[..., :3, 3] / ext[..., :3, 3]
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))  # one scale per scene
    torch.testing.assert_close(out[..., :3, :3], ext[..., :3, :3])


@pytest.mark.parametrize("kind", ["gta", "cape", "plucker", "gta_plucker"])
def test_camera_geometry_ignores_a_models_autocast(kind):
    """Inside a bf16 autocast region (mixed-precision training) the pose operators, the rays and the
    transform of float32 inputs are what they are outside it, values and gradients: the geometry
    runs in float32, not in autocast's 8-bit-mantissa matmuls (which also mixed dtypes in the
    hand-written backward on CUDA)."""
    gen = torch.Generator().manual_seed(11)
    enc = make_scene_encoding(kind, D)
    n, b = 6, 2
    hw = torch.rand(b, n, 2, generator=gen) * 2 * math.pi
    ext = random_se3(b, n, dtype=torch.float32, generator=gen)
    intrinsics = torch.tensor([[4.0, 0, 2], [0, 4.0, 3], [0, 0, 1]]).expand(b, n, 3, 3)
    inputs = [torch.randn(b, h, n, D, generator=gen) for h in (4, 2, 2)]

    def run(autocast: bool):
        qkv = [t.clone().requires_grad_() for t in inputs]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            tr = enc.temporal(hw, ext, None)
            q, k, v = tr.transform_qkv(*qkv)
            out = [q, k, v, tr.transform_out(q)]
            rays = enc.input_features(intrinsics, ext, 3, 2)
        sum(o.square().sum() for o in out).backward()
        return out + ([] if rays is None else [rays]), [t.grad for t in qkv]

    (plain, plain_grads), (mixed, mixed_grads) = run(False), run(True)
    for got, want in zip(mixed + mixed_grads, plain + plain_grads):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
