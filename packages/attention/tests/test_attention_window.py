import pytest
import torch
from einops import rearrange

from seqrender.attention import (
    Attention,
    TemporalAttention,
    WindowAttention,
    window_partition,
    window_unpartition,
    window_valid_mask,
)

from attention_testing import AngleRotation


def coordinate_mask(frames, height, width, window, frame_mask):
    """(B, 1, N, N) mask over tokens ordered (v, h, w), built from coordinates alone."""
    v, h, w = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    v, h, w = v.flatten(), h.flatten(), w.flatten()
    same = (h[:, None] // window == h[None] // window) & (w[:, None] // window == w[None] // window)
    return (same[None] & frame_mask[:, v][:, :, v])[:, None]


def dense_window(layer: WindowAttention, x, frame_mask, hook=None):
    b, v, h, w, _ = x.shape
    mask = coordinate_mask(v, h, w, layer.window, frame_mask)
    out = layer.attn(rearrange(x, "b v h w d -> b (v h w) d"), transform=hook, attn_mask=mask)
    return rearrange(out, "b (v h w) d -> b v h w d", v=v, h=h)


def random_frame_mask(batch, frames):
    mask = torch.rand(batch, frames, frames) < 0.5
    return mask | torch.eye(frames, dtype=torch.bool)


@pytest.mark.parametrize("shape,window", [((2, 3, 5, 7), 2), ((1, 4, 4, 4), 4), ((2, 2, 6, 5), 3), ((1, 3, 3, 2), 1)])
def test_partition_roundtrip_and_edge_padding(shape, window):
    x = torch.randn(*shape, 2, 3)
    parts = window_partition(x, window)
    b, v, h, w = shape
    n_win = -(-h // window) * -(-w // window)
    assert parts.shape == (b * n_win, v * window * window, 2, 3)
    torch.testing.assert_close(window_unpartition(parts, window, shape), x)
    valid = window_valid_mask(h, w, window, frames=v)
    assert valid.shape == (n_win, v * window * window) and valid.sum() == v * h * w
    # every padded token repeats a real token of the same frame at the clamped coordinate
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij"), dim=-1)
    pc = window_partition(coords, window)
    real = x[pc[..., 0], pc[..., 1], pc[..., 2], pc[..., 3]]
    torch.testing.assert_close(parts, real)


@pytest.mark.parametrize(
    "shape,window,heads,kv,regs",
    [((2, 3, 5, 6), 2, 4, 2, 1), ((1, 4, 4, 4), 2, 2, 1, 0), ((2, 2, 5, 3), 4, 4, 4, 2), ((1, 3, 6, 6), 3, 4, 1, 1)],
)
def test_window_equals_coordinate_masked_dense(shape, window, heads, kv, regs):
    torch.manual_seed(0)
    layer = WindowAttention(16, heads, kv, window=window, num_registers=regs).double()
    x = torch.randn(*shape, 16, dtype=torch.float64)
    fm = random_frame_mask(shape[0], shape[1])
    torch.testing.assert_close(layer(x), dense_window(layer, x, torch.ones_like(fm)))
    torch.testing.assert_close(layer(x, frame_mask=fm), dense_window(layer, x, fm))


def test_window_hook_uses_partition_order():
    torch.manual_seed(1)
    b, v, h, w = 2, 3, 5, 3
    layer = WindowAttention(16, 4, 2, window=2).double()
    x = torch.randn(b, v, h, w, 16, dtype=torch.float64)
    angles = torch.rand(b, v, h, w, dtype=torch.float64) * 6.3
    fm = random_frame_mask(b, v)
    out = layer(x, transform=AngleRotation(window_partition(angles, 2)), frame_mask=fm)
    dense = dense_window(layer, x, fm, hook=AngleRotation(angles.flatten(1)))
    torch.testing.assert_close(out, dense)


def test_window_one_is_temporal_attention():
    torch.manual_seed(2)
    win = WindowAttention(16, 4, 2, window=1).double()
    temporal = TemporalAttention(16, 4, 2).double()
    temporal.load_state_dict(win.state_dict())
    x = torch.randn(2, 4, 3, 5, 16, dtype=torch.float64)
    fm = random_frame_mask(2, 4)
    torch.testing.assert_close(win(x, frame_mask=fm), temporal(x, frame_mask=fm))


@pytest.mark.parametrize("window", [5, 8])
def test_large_window_is_full_attention(window):
    torch.manual_seed(3)
    layer = WindowAttention(16, 2, window=window).double()
    full = Attention(16, 2).double()
    full.load_state_dict(layer.attn.state_dict())
    x = torch.randn(2, 3, 5, 4, 16, dtype=torch.float64)
    expected = rearrange(full(rearrange(x, "b v h w d -> b (v h w) d")), "b (v h w) d -> b v h w d", v=3, h=5)
    torch.testing.assert_close(layer(x), expected)


def test_window_frame_permutation_equivariance():
    torch.manual_seed(4)
    layer = WindowAttention(16, 4, 1, window=2).double()
    x = torch.randn(2, 5, 3, 4, 16, dtype=torch.float64)
    fm = random_frame_mask(2, 5)
    perm = torch.randperm(5)
    out = layer(x, frame_mask=fm)
    out_perm = layer(x[:, perm], frame_mask=fm[:, perm][:, :, perm])
    torch.testing.assert_close(out_perm, out[:, perm])


def test_window_bad_arguments():
    with pytest.raises(ValueError, match="window"):
        WindowAttention(16, 2, window=0)
    layer = WindowAttention(16, 2, window=2)
    with pytest.raises(ValueError, match="frame_mask"):
        layer(torch.randn(1, 3, 4, 4, 16), frame_mask=torch.ones(1, 3, 2, dtype=torch.bool))
