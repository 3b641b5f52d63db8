"""Model sizes as one-line config factories (DiT-style). Paper sizes: Kaleido Table 1 (SPEC §1).

The auxiliary DINOv2 encoder is not part of these configs (it is optional here); the paper's totals
include it, see `PAPER_AUX_PARAMS`.
"""
from __future__ import annotations

from seqrender.models.kaleido import KaleidoConfig


def kaleido_tiny(**overrides) -> KaleidoConfig:
    """CPU-sized: 2 layers, hidden 64 (the KaleidoConfig defaults)."""
    return KaleidoConfig(**overrides)


def kaleido_small(**overrides) -> KaleidoConfig:
    return KaleidoConfig(**{"layers": 24, "hidden": 1024, "heads": 16, "kv_heads": 4, "window": 4, **overrides})


def kaleido_medium(**overrides) -> KaleidoConfig:
    return KaleidoConfig(**{"layers": 32, "hidden": 1280, "heads": 20, "kv_heads": 5, "window": 4, **overrides})


def kaleido_large(**overrides) -> KaleidoConfig:
    return KaleidoConfig(**{"layers": 40, "hidden": 1792, "heads": 28, "kv_heads": 7, "window": 8, **overrides})


KALEIDO_SIZES = {"tiny": kaleido_tiny, "small": kaleido_small, "medium": kaleido_medium, "large": kaleido_large}

# Table 1: total parameters (transformer + auxiliary encoder) and the auxiliary encoder's share.
PAPER_TOTAL_PARAMS = {"small": 653e6, "medium": 1.2e9, "large": 3.1e9}
PAPER_AUX_PARAMS = {"small": 86e6, "medium": 86e6, "large": 300e6}
