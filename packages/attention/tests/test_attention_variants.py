import torch

from seqrender.attention import Attention, ParallelViewTimeAttention, SequentialViewTimeAttention

from attention_testing import brute_force_viewtime_mask


def _masked(attn: Attention, x, mask):
    """Attention over all V·T·S tokens of x (B, V, T, S, D) with a (1, 1, N, N) mask."""
    b = x.shape[0]
    return attn(x.reshape(b, -1, x.shape[-1]), attn_mask=mask).reshape(x.shape)


def _view_and_time_masks(views, times, tokens):
    """Cross-view (same time) and cross-time (same view) token masks from coordinates."""
    frame_t = torch.arange(views * times) % times
    frame_v = torch.arange(views * times) // times
    same_t = (frame_t[:, None] == frame_t[None]).repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)
    same_v = (frame_v[:, None] == frame_v[None]).repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)
    return same_t[None, None], same_v[None, None]


def test_sequential_equals_two_masked_layers():
    torch.manual_seed(0)
    layer = SequentialViewTimeAttention(16, 4, 2).double()
    x = torch.randn(2, 3, 2, 2, 2, 16, dtype=torch.float64)
    grid = x.reshape(2, 3, 2, 4, 16)
    view_mask, time_mask = _view_and_time_masks(3, 2, 4)
    assert torch.equal(view_mask | time_mask, brute_force_viewtime_mask(3, 2, 4)[None])
    y = grid + _masked(layer.view_attn, grid, view_mask)
    expected = y + _masked(layer.time_attn, y, time_mask) - grid
    torch.testing.assert_close(layer(x), expected.reshape(x.shape))


def test_parallel_starts_as_average_and_sync_trains():
    torch.manual_seed(1)
    layer = ParallelViewTimeAttention(16, 2).double()
    x = torch.randn(1, 2, 3, 4, 16, dtype=torch.float64)
    view_mask, time_mask = _view_and_time_masks(2, 3, 4)
    expected = 0.5 * (_masked(layer.view_attn, x, view_mask) + _masked(layer.time_attn, x, time_mask))
    out = layer(x)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    assert layer.sync.weight.grad.abs().sum() > 0
