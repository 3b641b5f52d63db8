"""VGGT-compatible depth (DPT) and camera heads: key/shape parity with the VGGT checkpoint layout
(derived below from facebookresearch/vggt `heads/dpt_head.py` and `heads/camera_head.py`, VGGT-1B
sizes), strict loading, and functional invariants (numerical parity with VGGT's code: test_recon_vggt_parity.py)."""
import math

import pytest
import torch

from seqrender.recon import (AggregatorConfig, FeedForwardReconstructor, ReconstructorConfig, VGGTCameraHead,
                             VGGTDepthHead, load_vggt_reconstructor)
from seqrender.recon.camera_head import decode_pose_encoding
from seqrender.recon.dpt_vggt import sincos_embedding, view_plane_uv


def conv(prefix, c_out, c_in, k, bias=True):
    keys = {f"{prefix}.weight": (c_out, c_in, k, k)}
    return keys | ({f"{prefix}.bias": (c_out,)} if bias else {})


def linear(prefix, c_out, c_in):
    return {f"{prefix}.weight": (c_out, c_in), f"{prefix}.bias": (c_out,)}


def vggt_dpt_keys(dim_in, features, out_channels, output_dim):
    """DPTHead.__init__: norm; projects[i] 1×1 conv dim_in→oc_i; resize_layers 0: ConvTranspose2d(oc0, oc0, 4, 4)
    (weight (in, out, k, k)), 1: ConvTranspose2d(oc1, oc1, 2, 2), 2: Identity, 3: Conv2d(oc3, oc3, 3, 2, 1);
    _make_scratch: layer{i}_rn 3×3 oc_i→features, bias=False; refinenet1..3 with resConfUnit1/2,
    refinenet4 without resConfUnit1 (has_residual=False); out_conv 1×1; output_conv1 3×3 features→features/2;
    output_conv2 = [3×3 features/2→32, ReLU, 1×1 32→output_dim]."""
    keys = {"norm.weight": (dim_in,), "norm.bias": (dim_in,)}
    for i, oc in enumerate(out_channels):
        keys |= conv(f"projects.{i}", oc, dim_in, 1)
        keys |= conv(f"scratch.layer{i + 1}_rn", features, oc, 3, bias=False)
    c0, c1, _, c3 = out_channels
    keys |= {"resize_layers.0.weight": (c0, c0, 4, 4), "resize_layers.0.bias": (c0,),
             "resize_layers.1.weight": (c1, c1, 2, 2), "resize_layers.1.bias": (c1,)}
    keys |= conv("resize_layers.3", c3, c3, 3)
    for r in range(1, 5):
        keys |= conv(f"scratch.refinenet{r}.out_conv", features, features, 1)
        for unit in ([1, 2] if r < 4 else [2]):
            for c in (1, 2):
                keys |= conv(f"scratch.refinenet{r}.resConfUnit{unit}.conv{c}", features, features, 3)
    keys |= conv("scratch.output_conv1", features // 2, features, 3)
    keys |= conv("scratch.output_conv2.0", 32, features // 2, 3) | conv("scratch.output_conv2.2", output_dim, 32, 1)
    return keys


def vggt_camera_keys(dim, trunk_depth, mlp_ratio=4):
    """CameraHead.__init__ (new trunk): token_norm; trunk = Block(dim, qk_norm=False, init_values=0.01) × depth;
    trunk_norm; empty_pose_tokens (1, 1, 9); embed_pose Linear(9, dim); poseLN_modulation = [SiLU, Linear(dim, 3 dim)];
    adaln_norm without affine; pose_branch = Mlp(dim, dim // 2, 9)."""
    keys = {"token_norm.weight": (dim,), "token_norm.bias": (dim,), "trunk_norm.weight": (dim,),
            "trunk_norm.bias": (dim,), "empty_pose_tokens": (1, 1, 9)}
    hidden = dim * mlp_ratio
    for i in range(trunk_depth):
        p = f"trunk.{i}"
        keys |= {f"{p}.norm1.weight": (dim,), f"{p}.norm1.bias": (dim,), f"{p}.norm2.weight": (dim,),
                 f"{p}.norm2.bias": (dim,), f"{p}.ls1.gamma": (dim,), f"{p}.ls2.gamma": (dim,)}
        keys |= linear(f"{p}.attn.qkv", 3 * dim, dim) | linear(f"{p}.attn.proj", dim, dim)
        keys |= linear(f"{p}.mlp.fc1", hidden, dim) | linear(f"{p}.mlp.fc2", dim, hidden)
    keys |= linear("embed_pose", dim, 9) | linear("poseLN_modulation.1", 3 * dim, dim)
    keys |= linear("pose_branch.fc1", dim // 2, dim) | linear("pose_branch.fc2", 9, dim // 2)
    return keys


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_vggt_1b_head_layouts():
    with torch.device("meta"):
        depth, camera = VGGTDepthHead(2048), VGGTCameraHead(2048)
    assert shapes(depth) == vggt_dpt_keys(2048, 256, (256, 512, 1024, 1024), 2)
    assert shapes(camera) == vggt_camera_keys(2048, 4)


def test_default_reconstructor_with_vggt_heads_has_vggt_1b_keys():
    with torch.device("meta"):
        model = FeedForwardReconstructor(ReconstructorConfig(heads="vggt"))
    own = shapes(model)
    for part, expected in (("depth_head", vggt_dpt_keys(2048, 256, (256, 512, 1024, 1024), 2)),
                           ("camera_head", vggt_camera_keys(2048, 4))):
        assert {k[len(part) + 1:]: s for k, s in own.items() if k.startswith(part + ".")} == expected


def small_model(**kw):
    agg = AggregatorConfig(img_size=16, patch_size=4, embed_dim=16, depth=4, num_heads=2, num_register_tokens=1,
                           patch_embed="conv")
    return FeedForwardReconstructor(ReconstructorConfig(aggregator=agg, head_layers=(0, 1, 2, 3), head_features=8,
                                                        heads="vggt", vggt_out_channels=(4, 8, 8, 16), **kw))


def test_load_vggt_reconstructor_strict(tmp_path):
    g = torch.Generator().manual_seed(0)
    model = small_model()
    state = {}
    for part, expected in (("depth_head", vggt_dpt_keys(32, 8, (4, 8, 8, 16), 2)),
                           ("camera_head", vggt_camera_keys(32, 4)),
                           ("aggregator", {k: tuple(v.shape) for k, v in model.aggregator.state_dict().items()
                                           if "temporal" not in k})):
        state |= {f"{part}.{k}": torch.randn(s, generator=g) for k, s in expected.items()}
    state["track_head.foo"] = torch.zeros(3)  # other VGGT heads are ignored
    torch.save(state, tmp_path / "vggt.pt")
    left = load_vggt_reconstructor(model, tmp_path / "vggt.pt")
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith("track_head"):
            torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    assert all("temporal" in k or k.startswith("gaussian_head.") for k in left)
    del state["camera_head.pose_branch.fc2.bias"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="missing.*pose_branch.fc2.bias"):
        load_vggt_reconstructor(small_model(), tmp_path / "bad.pt")


def test_position_embedding_matches_the_formula():
    uv = view_plane_uv(5, 3, aspect=5 / 3, dtype=torch.float64)
    diag = math.hypot(5 / 3, 1)
    assert uv.shape == (3, 5, 2)
    torch.testing.assert_close(uv[0, 0], torch.tensor([-(5 / 3) / diag * 4 / 5, -1 / diag * 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(uv[2, 4], -uv[0, 0])
    emb = sincos_embedding(uv, 8)                    # 8 channels: u sin ×2, u cos ×2, v sin ×2, v cos ×2
    u, v = float(uv[1, 3, 0]), float(uv[1, 3, 1])
    expected = [math.sin(u), math.sin(u / 10), math.cos(u), math.cos(u / 10),
                math.sin(v), math.sin(v / 10), math.cos(v), math.cos(v / 10)]
    torch.testing.assert_close(emb[:, 1, 3], torch.tensor(expected, dtype=torch.float64))


def test_depth_head_shapes_and_positivity():
    torch.manual_seed(0)
    head = VGGTDepthHead(12, patch_size=4, features=8, out_channels=(4, 8, 8, 16))
    image = torch.rand(3, 3, 20, 12)                 # a 5 × 3 patch grid (odd: the ½× layer rounds up)
    tokens = [torch.randn(3, 15, 12) for _ in range(4)]
    out = head(tokens, image)
    assert out.depth.shape == (3, 20, 12) and out.confidence.shape == (3, 20, 12)
    assert (out.depth > 0).all() and (out.confidence > 1).all()
    torch.testing.assert_close(out.depth.log(), head.__class__.__mro__[1].forward(head, tokens, image)[:, 0])


def test_camera_head_iterations_accumulate_deltas_and_relu_the_fov():
    torch.manual_seed(0)
    head = VGGTCameraHead(16, trunk_depth=2, num_heads=2)
    delta = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0, -0.5, 0.25])
    with torch.no_grad():
        head.pose_branch.fc2.weight.zero_()
        head.pose_branch.fc2.bias.copy_(delta)
    outs = head.forward_all(torch.randn(2, 5, 16))
    assert len(outs) == 4
    for k, out in enumerate(outs, start=1):
        expected = k * delta
        expected[7:] = expected[7:].clamp_min(0)
        torch.testing.assert_close(out, expected.expand(2, 5, 9))


def test_camera_head_is_permutation_equivariant_over_frames():
    torch.manual_seed(0)
    head = VGGTCameraHead(16, trunk_depth=2, num_heads=2)
    tokens = torch.randn(2, 5, 16)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(head(tokens)[:, perm], head(tokens[:, perm]), rtol=1e-5, atol=1e-6)


def test_camera_head_output_decodes_to_the_encoded_camera():
    """With a constant pose branch the head outputs the encoding of a known camera, and
    decode_pose_encoding returns that camera: rotation, translation and pinhole intrinsics."""
    angle = 0.7
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]])
    quat_xyzw = torch.tensor([0, 0, math.sin(angle / 2), math.cos(angle / 2)])
    trans, fov_h, fov_w = torch.tensor([0.3, -0.1, 2.0]), 0.8, 1.1
    encoding = torch.cat([trans, quat_xyzw, torch.tensor([fov_h, fov_w])])
    head = VGGTCameraHead(16, trunk_depth=1, num_heads=2, iterations=1)
    with torch.no_grad():
        head.pose_branch.fc2.weight.zero_()
        head.pose_branch.fc2.bias.copy_(encoding)
    extrinsics, intrinsics = decode_pose_encoding(head(torch.randn(1, 3, 16)), height=24, width=32)
    torch.testing.assert_close(extrinsics[0, 1, :3, :3], rot, rtol=0, atol=1e-6)
    torch.testing.assert_close(extrinsics[0, 1, :3, 3], trans)
    torch.testing.assert_close(intrinsics[0, 1], torch.tensor([[16 / math.tan(fov_w / 2), 0, 16],
                                                               [0, 12 / math.tan(fov_h / 2), 12], [0, 0, 1.0]]))


def test_reconstructor_with_vggt_heads_runs_end_to_end():
    torch.manual_seed(0)
    model = small_model()
    out = model(torch.rand(1, 3, 2, 3, 16, 16))
    assert out.depth.shape == (1, 3, 2, 16, 16) and (out.depth > 0).all()
    assert out.pose_encoding.shape == (1, 3, 2, 9) and (out.pose_encoding[..., 7:] >= 0).all()
    assert out.gaussians.means.shape == (2, 3 * 16 * 16, 3)
