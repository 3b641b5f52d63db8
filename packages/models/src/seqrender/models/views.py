"""Training view splits for Kaleido (§3.2.1 iii).

A scene of V views is split into n references and V − n targets with π(n) ∝ 2^(−n) on
1 ≤ n ≤ V − 1 (or a fixed n, the ablation baseline: `references=n`). Random attention masking then keeps a uniformly chosen number of the references
(1..n) and of the targets (1..V − n) active, so every (n', m') with n' + m' ∈ [2, V] is seen;
inactive views are cut off by the frame mask and excluded from the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ViewSplit:
    """is_reference, active: (B, V) bool; frame_mask: (B, V, V) bool, frame i may attend to frame j.

    The loss goes on `target_mask` = active & ~is_reference.
    """

    is_reference: Tensor
    active: Tensor
    frame_mask: Tensor

    @property
    def target_mask(self) -> Tensor:
        return self.active & ~self.is_reference


def num_reference_probs(views: int) -> Tensor:
    """(V − 1,) probabilities of n = 1..V−1 references, π(n) ∝ 2^(−n) (Kaleido eq. 5)."""
    if views < 2:
        raise ValueError(f"views must be >= 2 (at least one reference and one target); got {views}")
    weights = 2.0 ** -torch.arange(1, views, dtype=torch.float64)
    return weights / weights.sum()


def sample_num_references(views: int, generator: torch.Generator | None = None) -> int:
    """One draw n ~ π(n) ∝ 2^(−n), 1 ≤ n ≤ views − 1."""
    probs = num_reference_probs(views)
    return 1 + int(torch.multinomial(probs, 1, generator=generator))


def _random_subset(size: int, count: int, generator: torch.Generator | None) -> Tensor:
    """(size,) bool with exactly `count` True entries at uniformly random positions."""
    chosen = torch.zeros(size, dtype=torch.bool)
    chosen[torch.randperm(size, generator=generator)[:count]] = True
    return chosen


def _split_one(views: int, random_masking: bool, generator: torch.Generator | None,
               references: int | None = None) -> tuple[Tensor, Tensor]:
    """One scene: (is_reference (V,), active (V,)); n ~ π(n), or n = `references` when given."""
    n_ref = sample_num_references(views, generator) if references is None else references
    is_reference = _random_subset(views, n_ref, generator)
    active = torch.ones(views, dtype=torch.bool)
    if random_masking:
        ref_idx, tgt_idx = is_reference.nonzero()[:, 0], (~is_reference).nonzero()[:, 0]
        keep_ref = int(torch.randint(1, n_ref + 1, (1,), generator=generator))
        keep_tgt = int(torch.randint(1, views - n_ref + 1, (1,), generator=generator))
        active = torch.zeros(views, dtype=torch.bool)
        active[ref_idx[_random_subset(len(ref_idx), keep_ref, generator)]] = True
        active[tgt_idx[_random_subset(len(tgt_idx), keep_tgt, generator)]] = True
    return is_reference, active


def frame_mask_from_active(active: Tensor) -> Tensor:
    """active (B, V) bool -> (B, V, V): active frames see active frames; every frame sees itself."""
    eye = torch.eye(active.shape[1], dtype=torch.bool, device=active.device)
    return (active[:, :, None] & active[:, None, :]) | eye


def sample_view_split(
    batch: int,
    views: int,
    *,
    random_masking: bool = True,
    references: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ViewSplit:
    """Independent split per scene: n ~ π(n) references (`references`: always exactly that many,
    1 ≤ n ≤ V − 1) at random positions, then (optionally) random attention masking down to (n', m')
    active views. Tensors on `device`."""
    if references is not None and not 1 <= references < views:
        raise ValueError(f"references must be in [1, {views - 1}] for {views} views; got {references}")
    pairs = [_split_one(views, random_masking, generator, references) for _ in range(batch)]
    is_reference = torch.stack([p[0] for p in pairs]).to(device)
    active = torch.stack([p[1] for p in pairs]).to(device)
    return ViewSplit(is_reference, active, frame_mask_from_active(active))
