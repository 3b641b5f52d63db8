"""Kaleido: shapes, zero-init, world-frame invariance (GTA), CFG dropping and frame masks."""
import math

import pytest
import torch

from seqrender.models import Kaleido, KaleidoConfig
from seqrender.models.blocks import AdaLNModulation, FinalLayer, grid_sincos, record_max_activations
from seqrender.posenc import KINDS

B, V, C, H, W = 2, 3, 4, 6, 6  # 3×3 tokens with patch 2: window K=2 needs padding


def small_config(**overrides):
    return KaleidoConfig(**{"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "window": 2,
                            "in_channels": C, **overrides})


def random_rotation(gen):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.det(q)


def random_se3(gen, *, translation=True):
    g = torch.eye(4)
    g[:3, :3] = random_rotation(gen)
    if translation:
        g[:3, 3] = torch.randn(3, generator=gen)
    return g


def scene(gen):
    """Inputs for B scenes of V views: latents, t, references, intrinsics, extrinsics."""
    z = torch.randn(B, V, C, H, W, generator=gen)
    t = torch.rand(B, generator=gen)
    is_reference = torch.tensor([[True, False, False], [False, True, True]])
    extrinsics = torch.stack([torch.stack([random_se3(gen) for _ in range(V)]) for _ in range(B)])
    intrinsics = torch.tensor([[5.0, 0, 3], [0, 5.0, 3], [0, 0, 1]]).expand(B, V, 3, 3)
    return z, t, is_reference, intrinsics, extrinsics


def randomise_zero_init(model, gen):
    """Give the adaLN-Zero and final layers random weights so outputs depend on everything."""
    for module in model.modules():
        if isinstance(module, (AdaLNModulation, FinalLayer)):
            for p in module.parameters():
                p.data = 0.1 * torch.randn(p.shape, generator=gen)
    return model


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    posenc = overrides.pop("posenc", "gta")
    return randomise_zero_init(Kaleido(small_config(**overrides), posenc=posenc), torch.Generator().manual_seed(seed))


def run(model, z, t, is_reference, intrinsics, extrinsics, **kw):
    with torch.no_grad():
        return model(z, t, is_reference=is_reference, intrinsics=intrinsics, extrinsics=extrinsics, **kw)


@pytest.mark.parametrize("posenc", KINDS)
def test_untrained_output_is_exactly_zero_and_shaped(posenc):
    model = Kaleido(small_config(), posenc=posenc)
    out = run(model, *scene(torch.Generator().manual_seed(1)))
    assert out.shape == (B, V, C, H, W)
    assert torch.equal(out, torch.zeros_like(out))


def test_data_prediction_is_turned_into_the_flow_velocity():
    """prediction="data": the network output read as x̂, so v = (z − x̂) / max(t, eps) (float64)."""
    z, t, is_reference, intrinsics, extrinsics = scene(torch.Generator().manual_seed(1))
    t = torch.tensor([0.02, 0.6])
    raw = run(make_model().double(), z.double(), t.double(), is_reference, intrinsics.double(), extrinsics.double())
    velocity = run(make_model(prediction="data", prediction_eps=0.1), z, t, is_reference, intrinsics, extrinsics)
    expected = (z.double() - raw) / torch.tensor([0.1, 0.6], dtype=torch.float64)[:, None, None, None, None]
    torch.testing.assert_close(velocity.double(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        small_config(prediction="noise")


def conv3x3_per_pixel(x, weight, bias):
    """A zero-padded 3×3 convolution written out per pixel: x (n, K, H, W) -> (n, C, H, W) (float64)."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    out = x.new_empty(x.shape[0], weight.shape[0], *x.shape[-2:])
    for i, j in ((i, j) for i in range(x.shape[-2]) for j in range(x.shape[-1])):
        out[..., i, j] = torch.einsum("nkyx,ckyx->nc", padded[..., i:i + 3, j:j + 3], weight) + bias
    return out


def test_output_conv_starts_as_the_identity_and_filters_each_view():
    """output_conv (U-ViT's 3×3 conv after unpatchify): zero-initialised, the output is the plain
    model's; with weights, it is the plain output plus a zero-padded 3×3 convolution of each view (float64)."""
    gen = torch.Generator().manual_seed(3)
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    args = (z.double(), t.double(), is_reference, intrinsics.double(), extrinsics.double())
    plain = make_model().double()
    conv = Kaleido(small_config(output_conv=True)).double()
    missing = conv.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["output_conv.bias", "output_conv.weight"]
    base = run(plain, *args)
    assert torch.equal(run(conv, *args), base)
    weight, bias = torch.randn(C, C, 3, 3, generator=gen).double(), torch.randn(C, generator=gen).double()
    conv.output_conv.weight.data, conv.output_conv.bias.data = weight.clone(), bias.clone()
    expected = conv3x3_per_pixel(base.flatten(0, 1), weight, bias).unflatten(0, (B, V))
    torch.testing.assert_close(run(conv, *args), base + expected)


def test_pixel_head_adds_a_conv_decoding_of_features_and_the_noisy_input_to_target_frames():
    """pixel_head F: the last layer gives C + F channels per pixel (patch order c, row, column); on
    target frames the output is the first C plus conv → SiLU → conv → SiLU → conv of [the other F | z];
    references keep the plain output; zero-initialised, it starts as the plain model (float64)."""
    gen = torch.Generator().manual_seed(4)
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    args = (z.double(), t.double(), is_reference, intrinsics.double(), extrinsics.double())
    feats, p = 5, 2
    model = make_model(pixel_head=feats).double()
    tokens = []
    handle = model.final.register_forward_hook(lambda m, a, out: tokens.append(out.detach()))
    start = run(model, *args)
    per_token = tokens[0]                                            # (B, V, h, w, (C + F)·p·p)
    pixels = torch.empty(B, V, C + feats, H, W, dtype=torch.float64)
    for c, i, j in ((c, i, j) for c in range(C + feats) for i in range(p) for j in range(p)):
        pixels[:, :, c, i::p, j::p] = per_token[..., c * p * p + i * p + j]
    torch.testing.assert_close(start, pixels[:, :, :C])              # the head's last conv is zero
    convs = [m for m in model.pixel_head.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.weight.data = 0.2 * torch.randn(conv.weight.shape, generator=gen).double()
        conv.bias.data = 0.1 * torch.randn(conv.bias.shape, generator=gen).double()
    out = run(model, *args)
    handle.remove()
    x = torch.cat([pixels[:, :, C:], args[0]], dim=2)[~is_reference]  # (n, F + C, H, W)
    for k, conv in enumerate(convs):
        x = conv3x3_per_pixel(x, conv.weight, conv.bias)
        x = torch.nn.functional.silu(x) if k < len(convs) - 1 else x
    torch.testing.assert_close(out[~is_reference], pixels[:, :, :C][~is_reference] + x)
    torch.testing.assert_close(out[is_reference], pixels[:, :, :C][is_reference])
    with pytest.raises(ValueError, match="pixel_head"):
        small_config(pixel_head=-1)


def test_backward_reaches_every_parameter_and_activations_are_tracked():
    model = make_model(posenc="plucker")
    z, t, is_reference, intrinsics, extrinsics = scene(torch.Generator().manual_seed(2))
    outputs = []
    handle = model.blocks[-1].register_forward_hook(lambda m, a, out: outputs.append(out.detach()))
    with record_max_activations(model.blocks) as rows:
        out = model(z, t, is_reference=is_reference, intrinsics=intrinsics, extrinsics=extrinsics)
    handle.remove()
    assert len(rows) == 1 and len(rows[0]) == 2 and rows[0][-1] == outputs[0].abs().max().item()
    out[~is_reference].square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("posenc", ["gta", "cape", "plucker", "gta_plucker"])
def test_first_reference_frame_is_invariant_to_any_world_change(posenc):
    """E_i -> E_i·G for a random G in SE(3) leaves the output unchanged (registers included)."""
    gen = torch.Generator().manual_seed(3)
    model = make_model(posenc=posenc)
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    base = run(model, z, t, is_reference, intrinsics, extrinsics)
    moved = run(model, z, t, is_reference, intrinsics, extrinsics @ random_se3(gen))
    torch.testing.assert_close(moved, base, atol=2e-5, rtol=1e-4)
    # control: moving ONE camera relative to the others does change the output
    other = extrinsics.clone()
    other[:, 2] = other[:, 2] @ random_se3(gen)
    assert (run(model, z, t, is_reference, intrinsics, other) - base).abs().max() > 1e-3


def test_absolute_positions_add_dits_code_of_each_patch_position_and_keep_the_invariances():
    """model.absolute_positions: the tokens entering the first block are the patch embedding plus
    the role embedding plus DiT's 2-D sin-cos code of the token's (row, column); no parameters are
    added, and any world change still leaves the output unchanged (the code is in image space)."""
    gen = torch.Generator().manual_seed(11)
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    z = torch.randn(B, V, C, H, W + 2, generator=gen)  # 3×4 tokens: rows and columns cannot be mixed up
    model = make_model(absolute_positions=True)
    seen = {}
    model.patch_embed.register_forward_hook(lambda m, args, out: seen.update(patches=out))   # hooks return None
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(tokens=args[0]))
    base = run(model, z, t, is_reference, intrinsics, extrinsics)
    role = model.role_embed[is_reference.long()][:, :, None, None]            # (B, V, 1, 1, D)
    h, w = H // 2, (W + 2) // 2
    expected = seen["patches"] + role + grid_sincos(h, w, model.config.hidden)
    torch.testing.assert_close(seen["tokens"], expected, atol=1e-6, rtol=0)
    assert grid_sincos(h, w, model.config.hidden).std(dim=(0, 1)).max() > 0.1  # the code does vary
    moved = run(model, z, t, is_reference, intrinsics, extrinsics @ random_se3(gen))
    torch.testing.assert_close(moved, base, atol=2e-5, rtol=1e-4)
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in make_model().named_parameters()}
    assert (run(make_model(), z, t, is_reference, intrinsics, extrinsics) - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match="absolute_positions needs hidden divisible by 4"):
        small_config(absolute_positions=True, hidden=30, heads=3, kv_heads=3)


def test_frame_time_conditions_each_frame_on_its_own_t_and_references_on_zero():
    """model.frame_time: frame v of scene b is modulated by t[b, v] (references by 0). With a frame
    mask that connects no two views every frame is computed alone, so frame v of a per-frame-t call
    must equal frame v of a call with the one scene time t[:, v]; t (B,) is t (B, V) broadcast."""
    gen = torch.Generator().manual_seed(12)
    z, _, is_reference, intrinsics, extrinsics = scene(gen)
    model = make_model(frame_time=True)
    alone = torch.eye(V, dtype=torch.bool).expand(B, V, V)
    t = torch.rand(B, V, generator=gen)
    per_frame = run(model, z, t, is_reference, intrinsics, extrinsics, frame_mask=alone)
    for v in range(V):
        scene_time = run(model, z, t[:, v].contiguous(), is_reference, intrinsics, extrinsics, frame_mask=alone)
        torch.testing.assert_close(per_frame[:, v], scene_time[:, v], atol=1e-6, rtol=0)
    assert (per_frame[:, 2] - run(model, z, t[:, 1].contiguous(), is_reference, intrinsics, extrinsics,
                                  frame_mask=alone)[:, 2]).abs().max() > 1e-3  # t does matter per frame
    shared = torch.rand(B, generator=gen)
    broadcast = shared[:, None].expand(B, V).masked_fill(is_reference, 0.9)  # reference entries are read as 0
    assert torch.equal(run(model, z, shared, is_reference, intrinsics, extrinsics),
                       run(model, z, broadcast, is_reference, intrinsics, extrinsics))
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in make_model().named_parameters()}
    with pytest.raises(ValueError, match="per frame only with KaleidoConfig.frame_time"):
        run(make_model(), z, t, is_reference, intrinsics, extrinsics)


def test_gta_world_frame_rotation_invariance_without_registers():
    """pose_frame="world": GTA's logits depend on E_i E_j⁻¹ only, so with no registers a rotation
    about the world origin (which keeps every ‖t‖, hence the normalisation) changes nothing."""
    gen = torch.Generator().manual_seed(4)
    model = make_model(pose_frame="world", num_registers=0)
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    base = run(model, z, t, is_reference, intrinsics, extrinsics)
    rotated = run(model, z, t, is_reference, intrinsics, extrinsics @ random_se3(gen, translation=False))
    torch.testing.assert_close(rotated, base, atol=2e-5, rtol=1e-4)
    # camera-to-world poses (the wrong convention) would not be invariant
    c2w = torch.linalg.inv(extrinsics)
    wrong = run(model, z, t, is_reference, intrinsics, torch.linalg.inv(c2w @ random_se3(gen, translation=False)))
    assert (wrong - base).abs().max() > 1e-3


def test_permuting_views_permutes_outputs():
    """3D data carries no frame index: views are a set (first reference kept in place)."""
    gen = torch.Generator().manual_seed(5)
    model = make_model()
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    is_reference = torch.tensor([[True, False, False], [True, True, False]])
    base = run(model, z, t, is_reference, intrinsics, extrinsics)
    perm = torch.tensor([0, 2, 1])
    out = run(model, z[:, perm], t, is_reference[:, perm], intrinsics[:, perm], extrinsics[:, perm])
    torch.testing.assert_close(out, base[:, perm], atol=2e-5, rtol=1e-4)


def test_drop_condition_removes_reference_content_only():
    gen = torch.Generator().manual_seed(6)
    model = make_model()
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    changed = z.clone()
    changed[is_reference] = torch.randn(changed[is_reference].shape, generator=gen)
    drop = torch.tensor([True, True])
    a = run(model, z, t, is_reference, intrinsics, extrinsics, drop_condition=drop)
    b = run(model, changed, t, is_reference, intrinsics, extrinsics, drop_condition=drop)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    kept = run(model, changed, t, is_reference, intrinsics, extrinsics, drop_condition=~drop)
    assert (kept - a).abs().max() > 1e-3
    # dropping scene 0 only leaves scene 1 exactly as in the conditional pass
    half = run(model, z, t, is_reference, intrinsics, extrinsics, drop_condition=torch.tensor([True, False]))
    full = run(model, z, t, is_reference, intrinsics, extrinsics)
    torch.testing.assert_close(half[1], full[1], atol=0, rtol=0)


def test_frame_mask_isolates_a_view():
    """A view no other frame may attend to cannot influence the other frames' outputs."""
    gen = torch.Generator().manual_seed(7)
    model = make_model()
    z, t, is_reference, intrinsics, extrinsics = scene(gen)
    mask = torch.ones(B, V, V, dtype=torch.bool)
    mask[:, :, 2] = False
    mask[:, 2, :] = False
    mask[:, 2, 2] = True
    changed = z.clone()
    changed[:, 2] = torch.randn(changed[:, 2].shape, generator=gen)
    a = run(model, z, t, is_reference, intrinsics, extrinsics, frame_mask=mask)
    b = run(model, changed, t, is_reference, intrinsics, extrinsics, frame_mask=mask)
    torch.testing.assert_close(a[:, :2], b[:, :2], atol=1e-6, rtol=0)
    unmasked = run(model, changed, t, is_reference, intrinsics, extrinsics)
    assert (unmasked[:, :2] - run(model, z, t, is_reference, intrinsics, extrinsics)[:, :2]).abs().max() > 1e-3


@pytest.mark.parametrize("posenc", ["rope", "gta"])
def test_video_times_instead_of_cameras(posenc):
    gen = torch.Generator().manual_seed(8)
    model = make_model(posenc=posenc)
    z, t, is_reference, _, _ = scene(gen)
    times = (2 * math.pi * torch.arange(V) / V).expand(B, V)
    out = run(model, z, t, is_reference, None, None, times=times)
    assert out.shape == z.shape and torch.isfinite(out).all()


def test_bad_inputs_raise_clear_errors():
    model = Kaleido(small_config())
    z, t, is_reference, intrinsics, extrinsics = scene(torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match="in_channels=4"):
        run(model, z[:, :, :3], t, is_reference, intrinsics, extrinsics)
    with pytest.raises(ValueError, match="is_reference must be bool"):
        run(model, z, t, is_reference.float(), intrinsics, extrinsics)
    with pytest.raises(ValueError, match="multiples of patch_size=2"):
        run(model, z[..., :5], t, is_reference, intrinsics, extrinsics)
    with pytest.raises(ValueError, match="pose_frame must be one of first_reference, world"):
        small_config(pose_frame="camera")
    with pytest.raises(ValueError, match="intrinsics and extrinsics are required"):
        run(Kaleido(small_config(), posenc="plucker"), z, t, is_reference, None, None)


def masked_scene(gen, posenc):
    """4 views, view 0 (a reference) and view 2 (a target) inactive: mask, active subset, inputs."""
    views = 4
    z = torch.randn(B, views, C, H, W, generator=gen)
    t = torch.rand(B, generator=gen)
    is_reference = torch.tensor([[True, True, False, False], [True, False, True, False]])
    extrinsics = torch.stack([torch.stack([random_se3(gen) for _ in range(views)]) for _ in range(B)])
    intrinsics = torch.tensor([[5.0, 0, 3], [0, 5.0, 3], [0, 0, 1]]).expand(B, views, 3, 3)
    active = torch.tensor([False, True, False, True])
    mask = (active[:, None] & active[None, :]) | torch.eye(views, dtype=torch.bool)
    return z, t, is_reference, intrinsics, extrinsics, active, mask.expand(B, views, views)


@pytest.mark.parametrize("pose_frame", ["first_reference", "world"])
@pytest.mark.parametrize("posenc", ["gta", "cape", "plucker"])
def test_masked_views_never_reach_active_views(posenc, pose_frame):
    """Issue 10 item 3: the pose anchor and max-‖t‖ normalisation use active views only, so the
    active outputs ignore the masked views' poses and content and equal the subset run alone."""
    gen = torch.Generator().manual_seed(11)
    model = make_model(posenc=posenc, pose_frame=pose_frame)
    z, t, is_reference, intrinsics, extrinsics, active, mask = masked_scene(gen, posenc)
    # masked views get far-away poses (they would set max ‖t‖) and new content
    moved = extrinsics.clone()
    moved[:, ~active] = torch.stack([torch.stack([random_se3(gen) for _ in range(2)]) for _ in range(B)])
    moved[:, ~active, :3, 3] *= 50.0
    changed = z.clone()
    changed[:, ~active] = torch.randn(changed[:, ~active].shape, generator=gen)
    base = run(model, z, t, is_reference, intrinsics, extrinsics, frame_mask=mask)[:, active]
    other = run(model, changed, t, is_reference, intrinsics, moved, frame_mask=mask)[:, active]
    alone = run(model, z[:, active], t, is_reference[:, active], intrinsics[:, active], extrinsics[:, active])
    scale = base.abs().max()
    assert scale > 1e-2
    torch.testing.assert_close(other, base, atol=1e-5 * scale, rtol=0)
    torch.testing.assert_close(alone, base, atol=1e-5 * scale, rtol=0)


def test_active_views_from_frame_mask():
    from seqrender.models.kaleido import active_views
    from seqrender.models.views import frame_mask_from_active
    active = torch.tensor([[False, True, False, True], [True, True, True, True]])
    is_reference = torch.zeros(2, 4, dtype=torch.bool)
    assert torch.equal(active_views(frame_mask_from_active(active), is_reference), active)
    isolated = torch.eye(4, dtype=torch.bool).expand(2, 4, 4)
    assert active_views(isolated, is_reference).all()
    assert active_views(None, is_reference).all()
