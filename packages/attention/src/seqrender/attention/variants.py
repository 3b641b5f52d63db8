"""4Real-Video-V2's baselines for view-time attention (§3.1, Fig. 3, Table 2) as layers.

Both take x (B, V, T, *spatial, D) like `ViewTimeAttention` and return the residual update.
- cross-view attention: the V·S tokens of all views at one time attend to each other; a hook acts
  on (B·T, heads, V·S, d), tokens ordered (v, s);
- cross-time attention: the T·S tokens of one view attend to each other; a hook acts on
  (B·V, heads, T·S, d), tokens ordered (t, s).
"""

import torch
from einops import rearrange
from torch import Tensor, nn

from .core import Attention
from .hook import PositionalHook


def _cross_view(attn: Attention, x: Tensor, transform: PositionalHook | None) -> Tensor:
    """x (B, V, T, S, D) -> (B, V, T, S, D): attention among the views at each time."""
    out = attn(rearrange(x, "b v t s d -> (b t) (v s) d"), transform=transform)
    return rearrange(out, "(b t) (v s) d -> b v t s d", b=x.shape[0], v=x.shape[1])


def _cross_time(attn: Attention, x: Tensor, transform: PositionalHook | None) -> Tensor:
    """x (B, V, T, S, D) -> (B, V, T, S, D): attention among the times of each view."""
    out = attn(rearrange(x, "b v t s d -> (b v) (t s) d"), transform=transform)
    return rearrange(out, "(b v) (t s) d -> b v t s d", b=x.shape[0], t=x.shape[2])


class _TwoBranch(nn.Module):
    """Cross-view and cross-time `Attention`s; subclasses combine the branches in `combine`."""

    def __init__(self, dim, num_heads, num_kv_heads=None, *, num_registers=1, qk_norm=False):
        super().__init__()
        kwargs = dict(num_registers=num_registers, qk_norm=qk_norm)
        self.view_attn = Attention(dim, num_heads, num_kv_heads, **kwargs)
        self.time_attn = Attention(dim, num_heads, num_kv_heads, **kwargs)

    def forward(
        self,
        x: Tensor,
        *,
        view_transform: PositionalHook | None = None,
        time_transform: PositionalHook | None = None,
    ) -> Tensor:
        """x (B, V, T, *spatial, D) -> residual update of the same shape."""
        grid = x.reshape(*x.shape[:3], -1, x.shape[-1])
        return self.combine(grid, view_transform, time_transform).reshape(x.shape)


class SequentialViewTimeAttention(_TwoBranch):
    """Cross-view attention, then cross-time attention, each as a residual sub-layer.

    Returns u with x + u = y + cross_time(y), where y = x + cross_view(x).
    """

    def combine(self, grid: Tensor, view_transform, time_transform) -> Tensor:
        """grid (B, V, T, S, D) -> (B, V, T, S, D)."""
        after_view = _cross_view(self.view_attn, grid, view_transform)
        return after_view + _cross_time(self.time_attn, grid + after_view, time_transform)


class ParallelViewTimeAttention(_TwoBranch):
    """Cross-view and cross-time branches on the same input, merged by a synchronisation layer.

    out = ½(a + b) + sync([a, b]) with sync a linear map 2D -> D initialised to zero, so a fresh
    layer averages the two branches and training learns the merge (our reading of the paper's
    single-linear-layer synchronisation module).
    """

    def __init__(self, dim, num_heads, num_kv_heads=None, *, num_registers=1, qk_norm=False):
        super().__init__(dim, num_heads, num_kv_heads, num_registers=num_registers, qk_norm=qk_norm)
        self.sync = nn.Linear(2 * dim, dim)
        nn.init.zeros_(self.sync.weight)
        nn.init.zeros_(self.sync.bias)

    def combine(self, grid: Tensor, view_transform, time_transform) -> Tensor:
        """grid (B, V, T, S, D) -> (B, V, T, S, D)."""
        a = _cross_view(self.view_attn, grid, view_transform)
        b = _cross_time(self.time_attn, grid, time_transform)
        return 0.5 * (a + b) + self.sync(torch.cat([a, b], dim=-1))
