"""4Real-Video-V2 generator: backends agree (forward and backward), conditioning, RoPE positions."""
import pytest
import torch
from einops import rearrange

from seqrender.models import FourReal, FourRealConfig, registry
from seqrender.models.blocks import AdaLNModulation, FinalLayer
from seqrender.models.fourreal import collapsed_positions

B, V, T, C, H, W = 2, 3, 4, 3, 4, 4


def make_model(seed=0, **overrides):
    cfg = FourRealConfig(**{"layers": 2, "hidden": 48, "heads": 4, "kv_heads": 2, "in_channels": C, **overrides})
    torch.manual_seed(seed)
    model = FourReal(cfg)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():  # switch on the zero-initialised branches
        if isinstance(module, (AdaLNModulation, FinalLayer)):
            for p in module.parameters():
                p.data = 0.1 * torch.randn(p.shape, generator=gen)
    return model


def inputs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(B, V, T, C, H, W, generator=gen)
    row = torch.randn(B, T, C, H, W, generator=gen)
    column = torch.randn(B, V, C, H, W, generator=gen)
    return z, torch.rand(B, generator=gen), row, column


def test_frame_time_conditions_each_cell_on_its_own_t_and_given_cells_on_zero():
    """model.frame_time: the adaLN input of cell (v, t) is the embedding of its own time, 0 on the
    given row (view 0) and column (time 0); t (B,) is t (B, V, T) broadcast; no new parameters."""
    model = make_model(frame_time=True)
    z, _, row, column = inputs()
    t = torch.rand(B, V, T, generator=torch.Generator().manual_seed(5))
    given = torch.zeros(B, V, T, dtype=torch.bool)
    given[:, 0], given[:, :, 0] = True, True
    seen = []
    model.blocks[0].modulation.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        out = model(z, t, row=row, column=column)
        expected = torch.stack([model.time_embed(t[:, v, k] * ~given[:, v, k]) for v in range(V) for k in range(T)], 1)
    torch.testing.assert_close(seen[0], rearrange(expected, "b (v k) d -> b v k d", v=V), atol=1e-6, rtol=0)
    shared = torch.rand(B, generator=torch.Generator().manual_seed(6))
    broadcast = shared[:, None, None].expand(B, V, T).masked_fill(given, 0.7)   # given entries are read as 0
    with torch.no_grad():
        assert torch.equal(model(z, shared, row=row, column=column), model(z, broadcast, row=row, column=column))
        assert (model(z, shared, row=row, column=column) - out).abs().max() > 1e-3
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in make_model().named_parameters()}
    with pytest.raises(ValueError, match="per frame only with FourRealConfig.frame_time"):
        make_model()(z, t, row=row, column=column)


def test_untrained_output_is_zero():
    model = FourReal(FourRealConfig(in_channels=C, hidden=48, heads=4))
    z, t, row, column = inputs()
    assert torch.equal(model(z, t, row=row, column=column), torch.zeros_like(z))


def test_data_prediction_is_turned_into_the_flow_velocity():
    """prediction="data": the same network output read as x̂, so v = (z − x̂) / max(t, eps) (float64)."""
    z, t, row, column = inputs()
    t = torch.tensor([0.01, 0.7])  # one time below prediction_eps = 0.05 (clamped), one above
    with torch.no_grad():
        raw = make_model().double()(z.double(), t.double(), row=row.double(), column=column.double())
        velocity = make_model(prediction="data")(z, t, row=row, column=column)
    expected = (z.double() - raw) / torch.tensor([0.05, 0.7], dtype=torch.float64)[:, None, None, None, None, None]
    torch.testing.assert_close(velocity.double(), expected, rtol=1e-4, atol=1e-4)
    # untrained (zero final layer): x̂ = 0, so one Euler step to t = 0 lands on 0 (t above eps)
    t = torch.tensor([0.3, 0.9])
    untrained = FourReal(FourRealConfig(in_channels=C, hidden=48, heads=4, prediction="data"))
    torch.testing.assert_close(z - t[:, None, None, None, None, None] * untrained(z, t, row=row, column=column),
                               torch.zeros_like(z), atol=1e-6, rtol=0)


def test_pixel_head_decodes_every_cell_from_its_features_and_noisy_input():
    """pixel_head F: a generated cell's output is the last layer's first C channels plus conv → SiLU
    → conv → SiLU → conv of [its other F channels | z] (torch's conv2d, float64); the given row and
    column keep the first C channels; zero-initialised, it starts as the plain model's output."""
    feats, p = 4, 2
    z, t, row, column = (x.double() for x in inputs())
    model = make_model(pixel_head=feats).double()
    unpatched = []
    model.final.register_forward_hook(lambda m, a, out: unpatched.append(
        rearrange(out, "b n h w (c p q) -> b n c (h p) (w q)", p=p, q=p).detach()))
    with torch.no_grad():
        start = model(z, t, row=row, column=column)
    plain = rearrange(unpatched[0], "b (v t) c h w -> b v t c h w", v=V)
    torch.testing.assert_close(start, plain[:, :, :, :C])
    gen = torch.Generator().manual_seed(5)
    convs = [m for m in model.pixel_head.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.weight.data = 0.2 * torch.randn(conv.weight.shape, generator=gen).double()
        conv.bias.data = 0.1 * torch.randn(conv.bias.shape, generator=gen).double()
    with torch.no_grad():
        out = model(z, t, row=row, column=column)
    x = torch.cat([plain[:, :, :, C:], z], dim=3).flatten(0, 2)       # (B·V·T, F + C, H, W)
    for k, conv in enumerate(convs):
        x = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        x = torch.nn.functional.silu(x) if k < len(convs) - 1 else x
    generated = torch.ones(B, V, T, 1, 1, 1, dtype=torch.float64)
    generated[:, 0], generated[:, :, 0] = 0, 0                          # view 0 = row, time 0 = column
    torch.testing.assert_close(out, plain[:, :, :, :C] + generated * x.unflatten(0, (B, V, T)))


def test_decomposed_backend_equals_reference_forward_and_backward():
    ref = make_model(backend="reference")
    dec = make_model(backend="decomposed")
    dec.load_state_dict(ref.state_dict())
    z, t, row, column = inputs()
    outs = []
    for model in (ref, dec):
        out = model(z, t, row=row, column=column)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
    for (name, p_ref), p_dec in zip(ref.named_parameters(), dec.parameters()):
        torch.testing.assert_close(p_dec.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_fused_pattern_limits_the_receptive_field_of_one_layer():
    """With one layer and a frozen conditioning, cell (v, t) only sees cells in its row or column."""
    model = make_model(layers=1, backend="reference")
    z, t, _, _ = inputs()
    changed = z.clone()
    changed[:, 2, 3] += 1.0  # cell (v=2, t=3)
    delta = (model(changed, t) - model(z, t)).abs().amax(dim=(0, 3, 4, 5))  # (V, T)
    sees = torch.zeros(V, T, dtype=torch.bool)
    sees[2, :] = True
    sees[:, 3] = True
    assert (delta[~sees] < 1e-6).all() and (delta[sees] > 1e-4).all()


@pytest.mark.parametrize("pattern", ["sequential", "parallel"])
def test_baseline_patterns_receptive_field_and_backward(pattern):
    """One layer: parallel sees the row and column of a cell (like fused); sequential (cross-view
    then cross-time) already reaches the whole grid."""
    model = make_model(layers=1, attention=pattern)
    z, t, row, column = inputs()
    changed = z.clone()
    changed[:, 2, 3] += 1.0
    delta = (model(changed, t) - model(z, t)).abs().amax(dim=(0, 3, 4, 5))  # (V, T)
    sees = torch.ones(V, T, dtype=torch.bool)
    if pattern == "parallel":
        sees[:] = False
        sees[2, :] = True
        sees[:, 3] = True
    assert (delta[~sees] < 1e-6).all() and (delta[sees] > 1e-5).all()
    model(z, t, row=row, column=column).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_conditioning_videos_change_the_prediction():
    model = make_model(backend="reference")
    z, t, row, column = inputs()
    base = model(z, t, row=row, column=column)
    assert (model(z, t, row=row + 1, column=column) - base).abs().max() > 1e-3
    assert (model(z, t, row=row, column=column + 1) - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"row must have shape \(2, 4, 3, 4, 4\)"):
        model(z, t, row=column)


@pytest.mark.parametrize("pattern", ["sequential", "parallel"])
def test_baseline_sequences_rotate_each_token_like_the_fused_grid(pattern):
    """Every token of a cross-view / cross-time sequence gets the rotation of its own collapsed
    position (v·T_max + t, h, w), i.e. the one the fused transform gives it on the whole grid."""
    model = make_model(attention=pattern)
    fused = FourReal(FourRealConfig(**{**vars(model.config), "attention": "fused"}))
    s = 4  # tokens per frame (2×2)
    probe = torch.randn(B, 2, V * T * s, model.config.head_dim, generator=torch.Generator().manual_seed(4))
    expected = fused.rope(B, V, T, 2, 2, "cpu")["transform"].transform_qkv(probe, probe, probe)[0]
    expected = rearrange(expected, "b h (v t s) d -> b h v t s d", v=V, t=T)
    rope = model.rope(B, V, T, 2, 2, "cpu")
    by_view = rearrange(probe, "b h (v t s) d -> (b t) h (v s) d", v=V, t=T)
    got = rope["view_transform"].transform_qkv(by_view, by_view, by_view)[0]
    torch.testing.assert_close(rearrange(got, "(b t) h (v s) d -> b h v t s d", b=B, v=V), expected)
    by_time = rearrange(probe, "b h (v t s) d -> (b v) h (t s) d", v=V, t=T)
    got = rope["time_transform"].transform_qkv(by_time, by_time, by_time)[0]
    torch.testing.assert_close(rearrange(got, "(b v) h (t s) d -> b h v t s d", b=B, t=T), expected)


def test_collapsed_positions_match_the_paper_formula():
    pos = collapsed_positions(V, T, 2, 2, max_times=10)
    index = 0
    for v in range(V):
        for t in range(T):
            for h in range(2):
                for w in range(2):
                    assert pos[index].tolist() == [v * 10 + t, h, w]
                    index += 1


def test_registered_and_validated():
    model = registry.build("model", "fourreal", {"hidden": 48, "heads": 4, "in_channels": C})
    assert isinstance(model, FourReal)
    with pytest.raises(ValueError, match="backend must be one of"):
        FourRealConfig(backend="cuda")
    with pytest.raises(ValueError, match="attention must be one of"):
        FourRealConfig(attention="dense")
