"""Rotary position embedding (RoPE): frequencies, per-token angles and the 2×2 rotation itself.

A token at position ``p`` (one coordinate per axis) gets, for band ``i`` of axis ``a``, the
angle ``p_a · ω_{a,i}``; channel pair ``i`` of the rotated range is rotated by that angle. Axial
N-D RoPE is the concatenation of the per-axis bands, with any split of bands across axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .blockfn import BlockApply, BlockOp

FAMILIES = ("lang", "pixel", "integer", "geometric", "wide")
GEOMETRIC_SPAN = 16.0  # "geometric": highest / lowest frequency
WIDE_RANGE = (2.0, 1 / 32)  # "wide": highest and lowest frequency
LAYOUTS = ("half", "interleaved")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Raise a ValueError naming the argument when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def rope_frequencies(
    num_bands: int,
    *,
    family: str = "lang",
    base: float = 10000.0,
    max_freq: float = 10.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Angular frequencies ``(num_bands,)`` of one axis.

    - ``"lang"``: ``base^(-2i/d)`` with ``d = 2·num_bands`` (RoFormer / Llama), for integer positions.
    - ``"pixel"``: ``π · linspace(1, max_freq / 2, num_bands)``, for coordinates normalised to [-1, 1].
    - ``"integer"``: ``1, 2, …, num_bands``, the SO(2) harmonics for angle positions in [0, 2π).
      They wrap: on an n-position axis band n is the identity and bands k, n − k are conjugates.
    - ``"geometric"``: ``½ · 16^(−i/(num_bands − 1))``, fractional frequencies for angle positions
      in [0, 2π) (½ down to 1/32): every band turns less than half a turn across the axis, so
      relative offsets never alias and similarity falls with distance (GTA reference code scaling).
    - ``"wide"``: ``2 · 64^(−i/(num_bands − 1))`` (2 down to 1/32): the geometric family's low bands
      with top bands up to four times sharper (π/2 per token on an 8-token axis; 2-D RoPE's top band
      turns 1 rad per token), so neighbours are told apart; the top bands wrap, the low ones (< ½)
      do not, so relative offsets still never alias.
    """
    check_choice("family", family, FAMILIES)
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1; got {num_bands}")
    if family == "lang":
        exponent = torch.arange(num_bands, dtype=torch.float64, device=device) / num_bands
        freqs = base ** (-exponent)
    elif family == "pixel":
        freqs = math.pi * torch.linspace(1.0, max_freq / 2, num_bands, dtype=torch.float64, device=device)
    elif family == "integer":
        freqs = torch.arange(1, num_bands + 1, dtype=torch.float64, device=device)
    else:
        exponent = torch.arange(num_bands, dtype=torch.float64, device=device) / max(num_bands - 1, 1)
        top, low = (0.5, 0.5 / GEOMETRIC_SPAN) if family == "geometric" else WIDE_RANGE
        freqs = top * (low / top) ** exponent
    return freqs.to(dtype)


def rope_angles(
    positions: Tensor,
    bands: Sequence[int],
    *,
    family: str = "lang",
    base: float = 10000.0,
    max_freq: float = 10.0,
) -> Tensor:
    """Rotation angles of axial RoPE.

    positions: ``(..., A)`` (fractional allowed), one coordinate per axis; ``bands``: ``A`` band
    counts. Returns ``(..., sum(bands))``: axis 0's bands first, then axis 1's, and so on.
    Angles are float32 (float64 if the positions are float64).
    """
    if positions.shape[-1] != len(bands):
        raise ValueError(
            f"positions has {positions.shape[-1]} axes in its last dimension but bands has "
            f"{len(bands)} entries; they must match"
        )
    dtype = torch.promote_types(positions.dtype, torch.float32)
    per_axis = [
        positions[..., a, None].to(dtype)
        * rope_frequencies(n, family=family, base=base, max_freq=max_freq, dtype=dtype, device=positions.device)
        for a, n in enumerate(bands)
    ]
    return torch.cat(per_axis, dim=-1)


def rope_cis(angles: Tensor) -> Tensor:
    """Unit complex numbers ``e^{iθ}`` of angles ``(..., n)``: the 2×2 rotations of RoPE."""
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: Tensor, angles: Tensor, *, layout: str = "half", start: int = 0) -> Tensor:
    """Rotate channels ``[start, start + 2n)`` of ``x: (..., N, d)`` by ``angles: (..., N, n)``.

    Pair ``i`` is ``(start + i, start + n + i)`` for ``layout="half"`` (GPT-NeoX / Llama-HF) and
    ``(start + 2i, start + 2i + 1)`` for ``layout="interleaved"`` (RoFormer / Meta Llama); each pair
    ``(a, b)`` becomes ``(a·cos − b·sin, b·cos + a·sin)``. The angles broadcast against ``x``'s
    leading axes (e.g. ``(B, 1, N, n)`` for ``(B, H, N, d)``); other channels are unchanged.
    float16/bfloat16 inputs are rotated in float32 and cast back.
    """
    check_choice("layout", layout, LAYOUTS)
    stop = start + 2 * angles.shape[-1]
    if start < 0 or stop > x.shape[-1]:
        raise ValueError(f"rotating {stop - start} channels from start={start} needs head_dim >= {stop}; got {x.shape[-1]}")
    dtype = torch.promote_types(torch.promote_types(x.dtype, angles.dtype), torch.float32)
    cis = rope_cis(angles.to(dtype))
    op = BlockOp.build(cis, (start, stop), None, (0, 0), layout)
    return BlockApply.apply(x.to(dtype), cis, None, op).to(x.dtype)
