"""One entry point for fused view-time attention, with the backend chosen by name."""

import math

import torch
from torch import Tensor

from .decomposed import decomposed_viewtime, private_ops_available
from .reference import reference_viewtime

BACKENDS = ("auto", "reference", "decomposed", "flex", "triton")


def triton_available() -> bool:
    """True when the optional triton package imports."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def check_backend(backend: str) -> None:
    """Raise ValueError listing the backend names unless backend is one of them."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")


# Fraction of the ideal speed-up V·T / (V + T − 1) that `decomposed` (private CPU flash op) reaches
# over dense masked SDPA, by total tokens N = V·T·S: below ~1K tokens its fixed costs (relayouts, 2–3
# kernel calls, the merge) dominate. Fitted to benchmarks/viewtime_dispatch.py on the 2-core CI CPU
# (8 q / 2 kv heads, d = 64, forward and forward + backward; README "Which backend `auto` picks").
DECOMPOSED_EFFICIENCY = ((1024, 0.2), (2048, 0.45), (4096, 0.7))


def ideal_speedup(views: int, times: int) -> float:
    """Dense-to-pattern work ratio V·T / (V + T − 1): 1 when V or T is 1 (the pattern is full)."""
    return views * times / (views + times - 1)


def decomposed_efficiency(tokens_total: int) -> float:
    """DECOMPOSED_EFFICIENCY interpolated linearly in log2 N: constant beyond the last point,
    extrapolated (down to 0) below the first."""
    points = [(math.log2(n), e) for n, e in DECOMPOSED_EFFICIENCY]
    x = math.log2(max(tokens_total, 1))
    if x >= points[-1][0]:
        return points[-1][1]
    (xa, ea), (xb, eb) = next((a, b) for a, b in zip(points, points[1:]) if x <= b[0])
    return max(0.0, ea + (eb - ea) * (x - xa) / (xb - xa))


def choose_cpu_backend(views: int, times: int, tokens: int, *, private_ops: bool = True) -> str:
    """The faster exact CPU backend for a V × T grid of S-token frames: "decomposed" when its
    predicted speed-up over dense masked SDPA, ideal_speedup · decomposed_efficiency(V·T·S),
    exceeds 1, else "reference". Without the private flash ops, decomposed materialises its scores
    and is never faster: "reference"."""
    if not private_ops:
        return "reference"
    predicted = ideal_speedup(views, times) * decomposed_efficiency(views * times * tokens)
    return "decomposed" if predicted > 1.0 else "reference"


def resolve_backend(backend: str, q: Tensor, views: int, times: int) -> str:
    """Map "auto" to a concrete backend for q (B, H, V·T·S, d): triton on CUDA when installed;
    on CPU the faster of decomposed and reference for the shape (`choose_cpu_backend`); reference
    on other devices (dense SDPA kernels; the public decomposed path materialises scores)."""
    check_backend(backend)
    if backend != "auto":
        return backend
    if q.device.type == "cuda" and triton_available():
        return "triton"
    if q.device.type != "cpu":
        return "reference"
    tokens = q.shape[2] // (views * times)
    return choose_cpu_backend(views, times, tokens, private_ops=private_ops_available(q))


def check_viewtime_inputs(q, k, v, views, times, registers, frame_mask) -> None:
    """Raise ValueError naming the argument when shapes do not fit (B, H, V·T·S, d)."""
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"q, k, v must be (B, H, N, d) with k.shape == v.shape; got {q.shape}, {k.shape}, {v.shape}")
    if views < 1 or times < 1 or q.shape[2] % (views * times) or q.shape[2] != k.shape[2]:
        raise ValueError(f"views·times = {views}·{times} must divide the sequence length {q.shape[2]} of q and k")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q heads ({q.shape[1]}) must be a multiple of k/v heads ({k.shape[1]})")
    if registers is not None and (registers[0].shape != registers[1].shape or registers[0].shape[1:] != k.shape[1::2]):
        raise ValueError(f"registers must be a pair of (R, Hkv, d) = (R, {k.shape[1]}, {k.shape[3]}) tensors")
    frames = views * times
    if frame_mask is not None and (frame_mask.dtype != torch.bool or frame_mask.shape != (q.shape[0], frames, frames)):
        raise ValueError(f"frame_mask must be bool (B, V·T, V·T) = {(q.shape[0], frames, frames)}; got "
                         f"{frame_mask.dtype} {tuple(frame_mask.shape)}")


def viewtime_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    views: int,
    times: int,
    *,
    backend: str = "auto",
    registers: tuple[Tensor, Tensor] | None = None,
    frame_mask: Tensor | None = None,
) -> Tensor:
    """Fused view-time attention: token (v, t, s) attends to (v', t', s') iff v' = v or t' = t.

    q (B, Hq, V·T·S, d), k and v (B, Hkv, V·T·S, d), tokens ordered (v, t, s); Hq a multiple of Hkv.
    registers: (keys, values), each (R, Hkv, d), always attendable. frame_mask: (B, V·T, V·T) bool
    over frames f = v·T + t, AND-ed with the pattern. Returns (B, Hq, V·T·S, d).
    backend: "auto" (triton on CUDA when installed; on CPU the faster of decomposed and reference
    for the shape, see `choose_cpu_backend`), "reference", "decomposed",
    "flex" or "triton".
    """
    check_viewtime_inputs(q, k, v, views, times, registers, frame_mask)
    backend = resolve_backend(backend, q, views, times)
    kwargs = dict(registers=registers, frame_mask=frame_mask)
    if backend == "reference":
        return reference_viewtime(q, k, v, views, times, **kwargs)
    if backend == "decomposed":
        return decomposed_viewtime(q, k, v, views, times, **kwargs)
    if backend == "flex":
        from .flex import flex_viewtime

        return flex_viewtime(q, k, v, views, times, **kwargs)
    if not triton_available():
        raise ImportError("backend='triton' needs the optional triton package: "
                          "pip install 'seqrender-attention[triton]'")
    from .triton_kernel import triton_viewtime

    return triton_viewtime(q, k, v, views, times, **kwargs)
