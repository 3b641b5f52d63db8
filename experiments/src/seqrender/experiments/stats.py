"""Bootstrap intervals for evaluation scores.

Scores are per eval item (the mean over that item's target views), so items, not views, are the
resampled unit: the views of one item share its references and are not independent. Intervals are
percentile bootstrap intervals of the mean; a difference between two methods is bootstrapped on the
paired per-item differences (same items, same noise), which is what "beats it" should be tested on.
"""
from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95


def bootstrap_means(values: np.ndarray, *, samples: int, seed: int) -> np.ndarray:
    """(n,) per-item values -> (samples,) means of resamples of the n items with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"values must be a non-empty 1-D array; got shape {values.shape}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    return values[picks].mean(axis=1)


def interval(values: np.ndarray, *, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval (lo, hi) of the mean of `values` (n,)."""
    means = bootstrap_means(values, samples=samples, seed=seed)
    tail = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def summary(values: np.ndarray, *, samples: int = 2000, seed: int = 0) -> dict:
    """{"mean", "ci95": [lo, hi]} of per-item values; null entries (with a reason) when a value is
    not finite, so that metrics.json stays strict JSON."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return {"mean": None, "ci95": None, "invalid": "non-finite scores (NaN/inf predictions)"}
    lo, hi = interval(values, samples=samples, seed=seed)
    return {"mean": float(values.mean()), "ci95": [lo, hi]}
