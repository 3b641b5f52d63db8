"""Deterministic random streams keyed by integers, e.g. (seed, scene) or (seed, step, sample)."""

import numpy as np
import torch


def generator_from(*keys: int) -> torch.Generator:
    """A CPU torch.Generator whose state is a well-mixed function of the integer `keys` (order
    matters; (1, 2) and (2, 1) differ). Keys must be non-negative."""
    if any(k < 0 for k in keys):
        raise ValueError(f"keys must be non-negative integers, got {keys}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
