"""The interface an attention layer calls, without knowing which encoding it holds.

Shapes: ``q, o: (B, Hq, N, d)`` and ``k, v: (B, Hkv, N, d)`` with ``Hq`` a multiple of ``Hkv``
(GQA). A transform's per-token operators have a batch axis of size ``B`` or ``1`` and broadcast
over heads. Register tokens are appended by the attention after ``transform_qkv`` and never reach
the transform.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class PositionalTransform(Protocol):
    """Per-token block-diagonal operator applied around an attention call."""

    def transform_qkv(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def transform_out(self, o: Tensor) -> Tensor: ...


class IdentityTransform:
    """No positional encoding: returns its inputs unchanged."""

    def transform_qkv(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return q, k, v

    def transform_out(self, o: Tensor) -> Tensor:
        return o


@runtime_checkable
class SceneEncoding(Protocol):
    """Everything a Kaleido-style model needs from one positional-encoding choice."""

    input_channels: int

    def input_features(
        self, intrinsics: Tensor, extrinsics: Tensor, height: int, width: int
    ) -> Tensor | None:
        """``(B, V, 3, 3)``, ``(B, V, 4, 4)`` -> ``(B, V, input_channels, height, width)`` or None."""
        ...

    def spatial(self, hw: Tensor) -> PositionalTransform:
        """``hw: (N, 2)`` angles of one frame's tokens; acts on ``(B·V, heads, N, d)``."""
        ...

    def temporal(
        self, hw: Tensor, extrinsics: Tensor | None, times: Tensor | None
    ) -> PositionalTransform:
        """``hw: (B', N', 2)``, ``extrinsics: (B', G, 4, 4)`` (``G = N'`` or ``G | N'``), ``times: (B', N')``."""
        ...
