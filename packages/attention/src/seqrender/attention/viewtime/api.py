"""One entry point for fused view-time attention, with the backend chosen by name."""

import torch
from torch import Tensor

from .decomposed import decomposed_viewtime
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


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map "auto" to a concrete backend: triton on CUDA when installed, else decomposed."""
    check_backend(backend)
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" and triton_available() else "decomposed"


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
    backend: "auto" (triton on CUDA when installed, else decomposed), "reference", "decomposed",
    "flex" or "triton".
    """
    backend = resolve_backend(backend, q.device)
    check_viewtime_inputs(q, k, v, views, times, registers, frame_mask)
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
