"""ViewTimeAttention: a self-attention layer with the fused view-time pattern."""

from torch import Tensor

from ..core import AttentionLayer
from ..hook import PositionalHook
from .api import check_backend, viewtime_attention


class ViewTimeAttention(AttentionLayer):
    """Fused view-time self-attention over a V × T grid of frames (4Real-Video-V2 §3.1).

    Same parameters as `Attention` (GQA, QK-norm, registers); only the attention pattern differs.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        num_registers: int = 1,
        qk_norm: bool = False,
        backend: str = "auto",
    ):
        super().__init__(dim, num_heads, num_kv_heads, num_registers=num_registers, qk_norm=qk_norm)
        check_backend(backend)
        self.backend = backend

    def forward(
        self, x: Tensor, *, transform: PositionalHook | None = None, frame_mask: Tensor | None = None
    ) -> Tensor:
        """x (B, V, T, *spatial, D) -> same shape.

        transform acts on (B, heads, V·T·S, d), tokens ordered (v, t, s) with s the flattened
        spatial index; frame_mask (B, V·T, V·T) bool over frames f = v·T + t.
        """
        shape = x.shape
        views, times = shape[1], shape[2]
        q, k, v = self.attn.project(x.reshape(shape[0], -1, shape[-1]))
        if transform is not None:
            q, k, v = transform.transform_qkv(q, k, v)
        o = viewtime_attention(
            q, k, v, views, times, backend=self.backend, registers=self.attn.registers(), frame_mask=frame_mask
        )
        if transform is not None:
            o = transform.transform_out(o)
        return self.attn.merge(o).reshape(shape)
