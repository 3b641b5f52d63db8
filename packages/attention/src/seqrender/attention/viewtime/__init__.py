"""Fused view-time attention (4Real-Video-V2 §3.1) with several exact backends."""

from .api import BACKENDS, viewtime_attention
from .decomposed import decomposed_viewtime
from .mask import pattern_density, viewtime_frame_mask, viewtime_mask
from .module import ViewTimeAttention
from .reference import reference_viewtime

__all__ = [
    "BACKENDS",
    "ViewTimeAttention",
    "decomposed_viewtime",
    "pattern_density",
    "reference_viewtime",
    "viewtime_attention",
    "viewtime_frame_mask",
    "viewtime_mask",
]
