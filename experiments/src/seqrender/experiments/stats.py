"""Bootstrap intervals for evaluation scores.

Scores are per eval item (the mean over that item's target views), so items, not views, are the
resampled unit: the views of one item share its references and are not independent. Intervals are
percentile bootstrap intervals of the mean; a difference between two methods is bootstrapped on the
paired per-item differences (same items, same noise), which is what "beats it" should be tested on.
Across independent runs (an ablation's seeds) the interval is Student's t, `t_interval`.
"""
from __future__ import annotations

import math

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


def student_t_two_sided(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer `df` ≥ 1, in closed form (Abramowitz & Stegun 26.7.3
    and 26.7.4, with θ = atan(t / √df))."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer; got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ (cosθ + (2/3)cos³θ + … + (2·4···(df−3))/(1·3···(df−2)) cos^(df−2)θ))
        term, total = math.cos(theta), 0.0
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * j) / (2 * j + 1) * c2
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 0.0  # even: sinθ (1 + (1/2)cos²θ + … + (1·3···(df−3))/(2·4···(df−2)) cos^(df−2)θ)
    for j in range(1, df // 2 + 1):
        total += term
        term *= (2 * j - 1) / (2 * j) * c2
    return s * total


def student_t_quantile(confidence: float, df: int) -> float:
    """t with P(|T| ≤ t) = `confidence` (e.g. 0.95 -> the 97.5 % quantile), by bisection."""
    lo, hi = 0.0, 1.0
    while student_t_two_sided(hi, df) < confidence:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_two_sided(mid, df) < confidence else (lo, mid)
    return (lo + hi) / 2


def t_interval(values: np.ndarray, *, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval mean ± t·s/√n of `values` (n ≥ 2 independent runs, e.g. seeds)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"a t-interval needs at least 2 values; got shape {values.shape}")
    mean = float(values.mean())
    half = student_t_quantile(confidence, len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half
