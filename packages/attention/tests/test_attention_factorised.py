import torch
from einops import rearrange

from seqrender.attention import Attention, SpatialAttention

from attention_testing import AngleRotation


def test_spatial_attention_is_per_frame():
    torch.manual_seed(0)
    layer = SpatialAttention(16, 4, 2).double()
    x = torch.randn(2, 3, 4, 5, 16, dtype=torch.float64)
    angles = torch.rand(4 * 5, dtype=torch.float64)[None] * 6.3
    out = layer(x, transform=AngleRotation(angles))
    for b in range(2):
        for v in range(3):
            frame = x[b, v].reshape(1, 20, 16)
            expected = layer.attn(frame, transform=AngleRotation(angles)).reshape(4, 5, 16)
            torch.testing.assert_close(out[b, v], expected)
    # a change in one frame leaves the other frames untouched
    x2 = x.clone()
    x2[:, 1] += 1.0
    out2 = layer(x2)
    torch.testing.assert_close(out2[:, [0, 2]], layer(x)[:, [0, 2]])


def test_spatial_matches_full_attention_with_block_mask():
    torch.manual_seed(1)
    layer = SpatialAttention(16, 2).double()
    full = Attention(16, 2).double()
    full.load_state_dict(layer.attn.state_dict())
    x = torch.randn(1, 3, 2, 3, 16, dtype=torch.float64)
    frame = torch.arange(3).repeat_interleave(6)
    mask = (frame[:, None] == frame[None])[None, None]
    expected = full(rearrange(x, "b v h w d -> b (v h w) d"), attn_mask=mask)
    torch.testing.assert_close(layer(x), rearrange(expected, "b (v h w) d -> b v h w d", v=3, h=2))
