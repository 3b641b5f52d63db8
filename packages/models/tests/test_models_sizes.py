"""Paper sizes (Kaleido Table 1): parameter counts without the auxiliary DINOv2 encoder."""
import pytest
import torch

from seqrender.models import Kaleido
from seqrender.models.sizes import KALEIDO_SIZES, PAPER_AUX_PARAMS, PAPER_TOTAL_PARAMS


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_paper_sizes_match_table_1_within_8_percent(size):
    with torch.device("meta"):  # no memory, no init cost
        model = Kaleido(KALEIDO_SIZES[size]())
    params = sum(p.numel() for p in model.parameters())
    expected = PAPER_TOTAL_PARAMS[size] - PAPER_AUX_PARAMS[size]
    assert abs(params / expected - 1) < 0.08, (size, params, expected)


def test_tiny_is_cpu_sized_and_overridable():
    model = Kaleido(KALEIDO_SIZES["tiny"](in_channels=3))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert KALEIDO_SIZES["small"](window=8).window == 8
