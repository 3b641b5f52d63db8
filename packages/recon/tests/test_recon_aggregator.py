import pytest
import torch

from seqrender.recon.aggregator import Aggregator, AggregatorConfig, load_vggt_checkpoint
from seqrender.recon.camera_tokens import replace_camera_tokens
from seqrender.recon.layers import Rope2D

TINY = AggregatorConfig(img_size=14, patch_size=7, embed_dim=16, depth=2, num_heads=2, dino_depth=1,
                       patch_embed="conv")


def _images(b=1, v=2, t=3, size=14, seed=0):
    return torch.rand(b, v, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_temporal_layers_are_identity_at_init():
    torch.manual_seed(0)
    with_t = Aggregator(TINY)
    without = Aggregator(AggregatorConfig(**{**TINY.__dict__, "temporal": False}))
    without.load_state_dict({k: v for k, v in with_t.state_dict().items() if "temporal" not in k}, strict=True)
    x = _images()
    for a, b in zip(with_t(x), without(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the comparison can fail: a trained (non-zero) temporal layer changes the output
    torch.nn.init.normal_(with_t.global_temporal_blocks[0].attn.proj.weight)
    assert (with_t(x)[-1] - without(x)[-1]).abs().max() > 1e-3


def test_attention_pattern_per_timestep_and_across_views():
    torch.manual_seed(1)
    model = Aggregator(TINY)
    x = _images()
    y = x.clone()
    y[:, 1, 2] = torch.rand_like(y[:, 1, 2])  # change view 1 at timestep 2
    out_x, out_y = model(x)[-1], model(y)[-1]
    # zero-initialised temporal layers: other timesteps are untouched, other views of t = 2 change
    torch.testing.assert_close(out_x[:, :, :2], out_y[:, :, :2], rtol=0, atol=0)
    assert (out_x[:, 0, 2] - out_y[:, 0, 2]).abs().max() > 1e-4
    torch.nn.init.normal_(model.frame_temporal_blocks[0].attn.proj.weight)  # attention mixes time
    assert (model(x)[-1][:, :, 0] - model(y)[-1][:, :, 0]).abs().max() > 1e-4


def test_camera_and_register_tokens_first_view_vs_rest():
    torch.manual_seed(2)
    model = Aggregator(TINY)
    assert model.camera_token.shape == (1, 2, 1, 16) and model.register_token.shape == (1, 2, 4, 16)
    tokens = model.embed(_images(b=2, v=3, t=2)).view(2, 3, 2, -1, 16)
    assert model.patch_start_idx == 5 and tokens.shape[3] == 5 + 4
    for v in range(3):
        idx = 0 if v == 0 else 1
        torch.testing.assert_close(tokens[:, v, :, 0], model.camera_token[0, idx, 0].expand(2, 2, 16))
        torch.testing.assert_close(tokens[:, v, :, 1:5], model.register_token[0, idx].expand(2, 2, 4, 16))


def test_output_layout_and_layer_selection():
    model = Aggregator(TINY)
    x = _images(b=2, v=2, t=1)
    outs = model(x, layers=[1])
    assert len(outs) == 1 and outs[0].shape == (2, 2, 1, 9, 32)
    everything = model(x)
    swapped = model(x, layers=[1, 0])
    torch.testing.assert_close(swapped[0], everything[1])
    torch.testing.assert_close(swapped[1], everything[0])
    torch.testing.assert_close(model(x, layers=[0])[0], everything[0])  # stopping early is exact
    with pytest.raises(ValueError, match="layers"):
        model(_images(), layers=[2])
    with pytest.raises(ValueError, match="multiples of 7"):
        model(torch.rand(1, 1, 1, 3, 10, 14))


def test_rope2d_is_relative():
    rope = Rope2D(100.0)
    q, k = torch.randn(1, 2, 1, 8, dtype=torch.float64), torch.randn(1, 2, 1, 8, dtype=torch.float64)
    dot = lambda pq, pk: (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum(-1)
    torch.testing.assert_close(dot([3, 5], [1, 2]), dot([7, 9], [5, 6]))
    assert (dot([3, 5], [1, 2]) - dot([3, 5], [1, 3])).abs().max() > 1e-6
    torch.testing.assert_close(rope(q, torch.zeros(1, 1, 2, dtype=torch.long)), q)


def _vggt_block_keys(prefix: str, qk_norm: bool = True) -> dict[str, tuple]:
    """VGGT Block keys and shapes for embed_dim 16, mlp_ratio 4, head_dim 8 (written out by hand)."""
    keys = {
        "norm1.weight": (16,), "norm1.bias": (16,),
        "attn.qkv.weight": (48, 16), "attn.qkv.bias": (48,),
        "attn.proj.weight": (16, 16), "attn.proj.bias": (16,),
        "ls1.gamma": (16,), "norm2.weight": (16,), "norm2.bias": (16,),
        "mlp.fc1.weight": (64, 16), "mlp.fc1.bias": (64,),
        "mlp.fc2.weight": (16, 64), "mlp.fc2.bias": (16,), "ls2.gamma": (16,),
    }
    if qk_norm:
        keys.update({"attn.q_norm.weight": (8,), "attn.q_norm.bias": (8,), "attn.k_norm.weight": (8,), "attn.k_norm.bias": (8,)})
    return {prefix + k: v for k, v in keys.items()}


def _vggt_keys(patch_embed: str) -> dict[str, tuple]:
    keys = {"camera_token": (1, 2, 1, 16), "register_token": (1, 2, 4, 16)}
    for i in range(2):
        keys.update(_vggt_block_keys(f"frame_blocks.{i}."))
        keys.update(_vggt_block_keys(f"global_blocks.{i}."))
    if patch_embed == "conv":
        keys.update({"patch_embed.proj.weight": (16, 3, 7, 7), "patch_embed.proj.bias": (16,)})
    else:
        keys.update({
            "patch_embed.cls_token": (1, 1, 16), "patch_embed.pos_embed": (1, 1 + 4, 16),
            "patch_embed.register_tokens": (1, 4, 16), "patch_embed.mask_token": (1, 16),
            "patch_embed.patch_embed.proj.weight": (16, 3, 7, 7), "patch_embed.patch_embed.proj.bias": (16,),
            "patch_embed.norm.weight": (16,), "patch_embed.norm.bias": (16,),
        })
        keys.update(_vggt_block_keys("patch_embed.blocks.0.", qk_norm=False))
    return keys


@pytest.mark.parametrize("patch_embed", ["conv", "dinov2"])
def test_load_vggt_checkpoint_strict(tmp_path, patch_embed):
    g = torch.Generator().manual_seed(3)
    state = {"aggregator." + k: torch.randn(*s, generator=g) for k, s in _vggt_keys(patch_embed).items()}
    state["depth_head.projects.0.weight"] = torch.randn(4, 4, generator=g)  # other VGGT heads are ignored
    torch.save(state, tmp_path / "vggt.pt")
    model = Aggregator(AggregatorConfig(**{**TINY.__dict__, "patch_embed": patch_embed}))
    left = load_vggt_checkpoint(model, tmp_path / "vggt.pt")
    assert left and all("temporal" in k for k in left)
    own = model.state_dict()
    for k, v in state.items():
        if k.startswith("aggregator."):
            torch.testing.assert_close(own[k[len("aggregator."):]], v, rtol=0, atol=0)
    assert model(_images(v=2, t=2))[-1].isfinite().all()
    # a missing key, an unknown key, or a wrong shape is an error (strict)
    for broken in (
        {k: v for k, v in state.items() if k != "aggregator.frame_blocks.1.ls2.gamma"},
        {**state, "aggregator.extra_token": torch.zeros(1)},
        {**state, "aggregator.camera_token": torch.zeros(1, 2, 1, 8)},
    ):
        torch.save(broken, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match="does not match"):
            load_vggt_checkpoint(model, tmp_path / "bad.pt")


def test_camera_token_replacement_exact_semantics():
    b, v, t, n, c = 2, 3, 4, 6, 5
    tokens = torch.arange(b * v * t * n * c, dtype=torch.float32).view(b, v, t, n, c)
    out = replace_camera_tokens(tokens)
    for bi in range(b):
        for vi in range(v):
            for ti in range(t):
                assert torch.equal(out[bi, vi, ti, 0], tokens[bi, vi, 0, 0])  # view's own first-timestep token
                assert torch.equal(out[bi, vi, ti, 1:], tokens[bi, vi, ti, 1:])  # everything else unchanged
    assert not torch.equal(out[0, 1, 0, 0], out[0, 0, 0, 0])  # views keep distinct camera tokens
    other = replace_camera_tokens(tokens, camera_index=2)
    assert torch.equal(other[:, :, 3, 2], tokens[:, :, 0, 2]) and torch.equal(other[:, :, 3, 0], tokens[:, :, 3, 0])
    x = tokens.clone().requires_grad_()
    replace_camera_tokens(x)[:, :, 1:, 0].sum().backward()
    assert x.grad[:, :, 0, 0].eq(t - 1).all() and x.grad[:, :, 1:].eq(0).all()
    with pytest.raises(ValueError, match="camera_index"):
        replace_camera_tokens(tokens, camera_index=6)


def test_default_config_is_vggt_1b_layout():
    """AggregatorConfig() has VGGT-1B's parameter names and shapes (facebookresearch/vggt:
    Aggregator(img_size=518, patch_size=14, embed_dim=1024, depth=24, num_heads=16,
    patch_embed="dinov2_vitl14_reg", num_register_tokens=4)), written out here by hand."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Aggregator().state_dict().items()}
    expected = {
        "camera_token": (1, 2, 1, 1024), "register_token": (1, 2, 4, 1024),
        "patch_embed.cls_token": (1, 1, 1024), "patch_embed.pos_embed": (1, 1 + 37 * 37, 1024),
        "patch_embed.register_tokens": (1, 4, 1024), "patch_embed.mask_token": (1, 1024),
        "patch_embed.patch_embed.proj.weight": (1024, 3, 14, 14), "patch_embed.norm.weight": (1024,),
        "patch_embed.blocks.23.attn.qkv.weight": (3072, 1024), "patch_embed.blocks.23.ls2.gamma": (1024,),
        "patch_embed.blocks.23.mlp.fc1.weight": (4096, 1024),
        "frame_blocks.23.attn.qkv.weight": (3072, 1024), "frame_blocks.23.attn.q_norm.weight": (64,),
        "global_blocks.23.mlp.fc2.weight": (1024, 4096), "global_blocks.23.ls1.gamma": (1024,),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "patch_embed.proj.weight" not in shapes and "patch_embed.blocks.24.norm1.weight" not in shapes
    assert "frame_blocks.24.norm1.weight" not in shapes
