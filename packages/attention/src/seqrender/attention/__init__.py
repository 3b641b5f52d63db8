"""seqrender-attention: GQA attention with registers and positional hooks, factorised and temporal
window attention, and fused sparse view-time attention with several exact backends."""

from .core import Attention
from .factorised import SpatialAttention, TemporalAttention
from .hook import PositionalHook
from .variants import ParallelViewTimeAttention, SequentialViewTimeAttention
from .viewtime import BACKENDS, ViewTimeAttention, viewtime_attention, viewtime_mask
from .window import WindowAttention, window_partition, window_unpartition, window_valid_mask

__all__ = [
    "BACKENDS",
    "Attention",
    "ParallelViewTimeAttention",
    "PositionalHook",
    "SequentialViewTimeAttention",
    "SpatialAttention",
    "TemporalAttention",
    "ViewTimeAttention",
    "WindowAttention",
    "viewtime_attention",
    "viewtime_mask",
    "window_partition",
    "window_unpartition",
    "window_valid_mask",
]
