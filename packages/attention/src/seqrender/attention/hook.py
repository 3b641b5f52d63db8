"""The positional hook every attention layer accepts (structurally the same as seqrender-posenc's
`PositionalTransform`; attention never imports posenc)."""

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class PositionalHook(Protocol):
    """Acts on per-head tensors before and after attention.

    `transform_qkv(q, k, v)`: q (B, Hq, N, d), k and v (B, Hkv, N, d) -> the same shapes.
    `transform_out(o)`: o (B, Hq, N, d) -> (B, Hq, N, d), applied to the attention output of the N
    sequence tokens before heads are merged. Register tokens are appended after `transform_qkv`
    and are never seen by the hook.
    """

    def transform_qkv(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def transform_out(self, o: Tensor) -> Tensor: ...
