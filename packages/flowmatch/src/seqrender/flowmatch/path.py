"""The rectified-flow path z_t = (1 − t)·x + t·ε (t = 1 is noise, t = 0 is data) and its targets.

A network may predict any of three quantities; at a given (z_t, t) each determines the others:

    velocity v = ε − x,   data x = z_t − t·v,   noise ε = z_t + (1 − t)·v.

Going from a data prediction to a velocity divides by t, from a noise prediction by (1 − t). Those
divisors are clamped to at least ``eps`` (default ``1e-5``) so that the conversion stays finite at the
endpoints t = 0 and t = 1, where it is ill-posed (z_0 = x carries no information about ε, and
z_1 = ε none about x).
"""

from __future__ import annotations

import torch
from torch import Tensor

PREDICTIONS = ("velocity", "noise", "data")
DEFAULT_EPS = 1e-5


def expand_time(t: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast times over the trailing axes of ``like``.

    t: scalar, per sample (B,), or per leading index, e.g. per frame (B, V); like: (B, V, *rest) ->
    (B, 1, ..., 1) or (B, V, 1, ..., 1) (a 0-d tensor for a scalar t).
    """
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim > like.ndim or tuple(t.shape) != tuple(like.shape[:t.ndim]):
        raise ValueError(f"t must be a scalar or have a leading part of the shape {tuple(like.shape)}, such as "
                         f"({like.shape[0]},); got {tuple(t.shape)}")
    return t.reshape(*t.shape, *([1] * (like.ndim - t.ndim)))


def interpolate(x: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """z_t = (1 − t)·x + t·ε.  x, noise: (B, ...); t: (B,), scalar or a leading shape such as (B, V)
    (expand_time) -> (B, ...)."""
    t = expand_time(t, x)
    return (1 - t) * x + t * noise


def velocity_target(x: Tensor, noise: Tensor) -> Tensor:
    """Regression target of the velocity prediction, v = ε − x.  (B, ...) -> (B, ...)."""
    return noise - x


def _check_kind(name: str, value: str) -> None:
    if value not in PREDICTIONS:
        raise ValueError(f"{name} must be one of {', '.join(PREDICTIONS)}; got {value!r}")


def _to_velocity(pred: Tensor, z_t: Tensor, t: Tensor, source: str, eps: float) -> Tensor:
    if source == "velocity":
        return pred
    if source == "data":
        return (z_t - pred) / t.clamp(min=eps)
    return (pred - z_t) / (1 - t).clamp(min=eps)


def _from_velocity(v: Tensor, z_t: Tensor, t: Tensor, target: str) -> Tensor:
    if target == "velocity":
        return v
    if target == "data":
        return z_t - t * v
    return z_t + (1 - t) * v


def convert_prediction(
    pred: Tensor, z_t: Tensor, t: Tensor | float, *, source: str, target: str, eps: float = DEFAULT_EPS
) -> Tensor:
    """Convert a prediction of ``source`` kind into ``target`` kind at (z_t, t).

    pred, z_t: (B, ...); t: (B,) or scalar; source, target ∈ {"velocity", "noise", "data"}.
    Divisions by t (from "data") and 1 − t (from "noise") are clamped to ``eps``.
    """
    _check_kind("source", source)
    _check_kind("target", target)
    if source == target:
        return pred
    t = expand_time(t, z_t)
    return _from_velocity(_to_velocity(pred, z_t, t, source, eps), z_t, t, target)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the entries where ``mask`` (bool, broadcastable to values) is True.

    values: (B, ...) -> scalar; an all-False mask gives 0 (not NaN), with a zero gradient.
    """
    mask = torch.broadcast_to(mask, values.shape)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1).to(values.dtype)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the entries where ``mask`` is True, e.g. the target views only.

    pred, target: (B, V, C, H, W) (any shape); mask: bool broadcastable to it, e.g. (B, V, 1, 1, 1).
    """
    return masked_mean((pred - target).square(), mask)
