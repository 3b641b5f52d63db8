"""View sampling: π(n) ∝ 2^(−n) on 1..V−1 and the random attention masking invariants."""
from fractions import Fraction

import torch

from seqrender.models.views import num_reference_probs, sample_num_references, sample_view_split


def test_probabilities_are_the_truncated_halving_law():
    views = 6
    weights = [Fraction(1, 2**n) for n in range(1, views)]
    expected = [float(w / sum(weights)) for w in weights]
    assert torch.allclose(num_reference_probs(views), torch.tensor(expected, dtype=torch.float64), atol=1e-15)


def test_empirical_frequencies():
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_num_references(5, gen) for _ in range(6000)])
    freq = torch.stack([(draws == n).double().mean() for n in range(1, 5)])
    expected = torch.tensor([8, 4, 2, 1], dtype=torch.float64) / 15
    assert draws.min() >= 1 and draws.max() <= 4
    assert (freq - expected).abs().max() < 0.02


def test_view_split_invariants():
    gen = torch.Generator().manual_seed(1)
    split = sample_view_split(64, 6, generator=gen)
    active_refs = (split.active & split.is_reference).sum(1)
    assert (active_refs >= 1).all() and (split.target_mask.sum(1) >= 1).all()
    eye = torch.eye(6, dtype=torch.bool)
    expected = (split.active[:, :, None] & split.active[:, None, :]) | eye
    assert torch.equal(split.frame_mask, expected)
    # masking covers small settings too: some scene keeps exactly one reference and one target
    assert ((active_refs == 1) & (split.target_mask.sum(1) == 1)).any()
    full = sample_view_split(8, 6, random_masking=False, generator=gen)
    assert full.active.all() and full.frame_mask.all()


def test_fixed_number_of_references():
    """The ablation baseline: exactly `references` reference views per scene, at varying positions."""
    gen = torch.Generator().manual_seed(2)
    split = sample_view_split(64, 4, random_masking=False, references=1, generator=gen)
    assert (split.is_reference.sum(1) == 1).all() and split.active.all()
    assert (split.is_reference.sum(0) > 0).all()  # every position serves as the reference sometimes
    masked = sample_view_split(64, 6, random_masking=True, references=2, generator=gen)
    assert (masked.is_reference.sum(1) == 2).all()
    assert ((masked.active & masked.is_reference).sum(1) >= 1).all()
    for bad in (0, 4):
        try:
            sample_view_split(2, 4, references=bad)
        except ValueError as exc:
            assert "references must be in [1, 3]" in str(exc)
        else:
            raise AssertionError(f"references={bad} was accepted")
