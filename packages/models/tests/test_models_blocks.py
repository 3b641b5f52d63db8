"""Shared blocks against formulas written out independently."""
import math

import torch

from seqrender.models.blocks import (
    AdaLNModulation,
    grid_sincos,
    PatchEmbed,
    SwiGLU,
    modulate,
    record_max_activations,
    swiglu_hidden,
    timestep_features,
    unpatchify,
)


def test_timestep_features_formula():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    feats = timestep_features(t, 8)
    for i, ti in enumerate(t.tolist()):
        for k in range(4):
            freq = 10000 ** (-k / 4)
            assert math.isclose(feats[i, k].item(), math.cos(1000 * ti * freq), abs_tol=1e-4)
            assert math.isclose(feats[i, 4 + k].item(), math.sin(1000 * ti * freq), abs_tol=1e-4)


def dit_2d_sincos(h, w, dim):
    """DiT's get_2d_sincos_pos_embed (facebookresearch/DiT models.py), written out in float64 lists:
    per token [sin | cos of the column index, sin | cos of the row index], ω_k = 10000^(-k / (dim/4))."""
    def one_axis(pos):
        omegas = [10000 ** (-k / (dim // 4)) for k in range(dim // 4)]
        return [math.sin(pos * o) for o in omegas] + [math.cos(pos * o) for o in omegas]
    return [[one_axis(j) + one_axis(i) for j in range(w)] for i in range(h)]


def test_grid_sincos_is_dits_2d_embedding_up_to_a_channel_order():
    h, w, dim = 3, 5, 16
    ours = grid_sincos(h, w, dim).double()
    q = dim // 4  # ours: [cos row | sin row | cos col | sin col]; DiT: [sin col | cos col | sin row | cos row]
    order = [*range(3 * q, 4 * q), *range(2 * q, 3 * q), *range(q, 2 * q), *range(q)]
    torch.testing.assert_close(ours[..., order], torch.tensor(dit_2d_sincos(h, w, dim), dtype=torch.float64),
                               atol=1e-6, rtol=0)
    assert len({tuple(v) for v in ours.reshape(h * w, dim).tolist()}) == h * w  # every token its own code


def test_swiglu_matches_its_definition():
    torch.manual_seed(0)
    mlp = SwiGLU(16, mlp_ratio=2.0)
    x = torch.randn(3, 16, dtype=torch.float64)
    mlp.double()
    hidden = swiglu_hidden(16, 2.0)
    w1, w3 = mlp.w13.weight[:hidden], mlp.w13.weight[hidden:]
    a, b = x @ w1.T, x @ w3.T
    expected = (a / (1 + torch.exp(-a)) * b) @ mlp.w2.weight.T
    torch.testing.assert_close(mlp(x), expected)
    assert swiglu_hidden(1024, 8 / 3) == 2736  # multiple of 8 at or above 2730


def test_patch_embed_reads_patches_row_major_and_unpatchify_inverts():
    x = torch.randn(2, 3, 4, 6, 8)  # (B, V, C, H, W), patch 2 -> (3, 4) tokens
    embed = PatchEmbed(4, 4 * 2 * 2, 2)
    with torch.no_grad():
        embed.proj.weight.copy_(torch.eye(16))
        embed.proj.bias.zero_()
    tokens = embed(x)
    assert tokens.shape == (2, 3, 3, 4, 16)
    # token (i, j) holds channels c, then patch rows p, then patch columns q
    for i, j, c, p, q in [(0, 0, 0, 0, 0), (2, 3, 3, 1, 1), (1, 2, 2, 0, 1)]:
        assert tokens[1, 2, i, j, c * 4 + p * 2 + q] == x[1, 2, c, 2 * i + p, 2 * j + q]
    torch.testing.assert_close(unpatchify(tokens, 2), x)


def test_adaln_is_zero_initialised_and_modulate_formula():
    mod = AdaLNModulation(8, 4, 3)
    chunks = mod(torch.randn(2, 8))
    assert len(chunks) == 3 and all(torch.equal(c, torch.zeros(2, 4)) for c in chunks)
    x, shift, scale = torch.randn(2, 5, 4), torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


def test_record_max_activations():
    blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)])
    x = torch.randn(4, 3)
    with record_max_activations(blocks) as rows:
        y1 = blocks[0](x)
        y2 = blocks[1](y1)
    assert rows == [[y1.abs().max().item(), y2.abs().max().item()]]
    blocks[0](x)
    assert len(rows) == 1  # hooks removed on exit
