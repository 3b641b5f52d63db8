"""Kaleido's angle frequencies do not alias: distinct relative offsets give distinct transforms, and
the q·k similarity of a constant vector falls with distance over the whole axis (issue 10, item 2).

The operators are read back from the transform itself (applied to basis vectors), in float64.
"""

import pytest
import torch
from einops import rearrange

from seqrender.posenc import frame_angles, grid_angles, make_scene_encoding

D = 32
GRIDS = range(4, 65)  # tokens per side
CLIPS = range(2, 65)  # frames per clip


def operators(transform, tokens: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token query and key maps ``(N, d, d)`` of ``transform``: column b = map of e_b."""
    basis = rearrange(torch.eye(d, dtype=torch.float64), "b c -> b 1 1 c").expand(d, 1, tokens, d)
    q, k, _ = transform.transform_qkv(basis, basis, basis)
    return rearrange(q, "b 1 n c -> n c b"), rearrange(k, "b 1 n c -> n c b")


def relative_operators(transform, tokens: int, d: int = D) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2N − 1, d, d)`` bilinear forms ``M_iᵀ K_j`` of offsets ``j − i = −(N−1) … N−1``, and the offsets."""
    mq, mk = operators(transform, tokens, d)
    forward = mq[0].mT @ mk             # i = 0, j = Δ ≥ 0
    backward = mq[1:].mT @ mk[0]        # i = Δ > 0, j = 0
    offsets = torch.cat([torch.arange(tokens), -torch.arange(1, tokens)])
    return torch.cat([forward, backward]), offsets


def check_no_aliasing(transform, tokens: int, *, monotone: bool = True) -> None:
    forms, offsets = relative_operators(transform, tokens)
    flat = forms.flatten(1)
    sq = (flat * flat).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T).clamp_min(0).sqrt()
    distinct = offsets[:, None] != offsets[None, :]
    closest = dist[distinct].min().item()
    assert closest > 1e-3, f"two distinct offsets give the same transform on {tokens} tokens ({closest:.1e})"
    if not monotone:
        return
    similarity = forms[:tokens].sum(dim=(1, 2))  # onesᵀ M ones for offsets 0 … N−1
    steps = similarity.diff()
    assert (steps < 0).all(), f"similarity rises with distance on {tokens} tokens: {similarity.tolist()}"


def axis_angles(n: int, axis: int) -> torch.Tensor:
    """``(n, 2)`` angles of one row (axis 1) or one column (axis 0) of an n×n grid, float64."""
    return (grid_angles(1, n) if axis == 1 else grid_angles(n, 1)).double()


# RoPE and GTA share these rotations (GTA also applies them to v and, inverted, to the output);
# the q/k maps read back here are the same for posenc=rope and posenc=gta.
@pytest.mark.parametrize("axis", [0, 1])
def test_grid_offsets_are_distinct_and_similarity_falls(axis):
    enc = make_scene_encoding("gta", D)
    for n in GRIDS:
        check_no_aliasing(enc.spatial(axis_angles(n, axis)), n)  # spatial attention: d/4 bands
        check_no_aliasing(enc.temporal(axis_angles(n, axis)[None], None, None), n)  # temporal: d/8


def test_clip_offsets_are_distinct_and_similarity_falls():
    enc = make_scene_encoding("gta", D)
    for frames in CLIPS:
        hw = torch.zeros(1, frames, 2, dtype=torch.float64)
        times = frame_angles(frames).double()[None]
        check_no_aliasing(enc.temporal(hw, None, times), frames)


@pytest.mark.parametrize("axis", [0, 1])
def test_wide_frequencies_keep_offsets_distinct_and_tell_neighbours_apart(axis):
    """The "wide" family wraps its top bands but keeps bands below ½, so no two offsets alias; on an
    8-token axis a neighbour's similarity drops several times more than with the geometric family."""
    wide, geometric = (make_scene_encoding("gta", D, frequencies=f) for f in ("wide", "geometric"))
    for n in GRIDS:
        check_no_aliasing(wide.spatial(axis_angles(n, axis)), n, monotone=False)
        check_no_aliasing(wide.temporal(axis_angles(n, axis)[None], None, None), n, monotone=False)
    drops = []
    for enc in (wide, geometric):
        forms, _ = relative_operators(enc.spatial(axis_angles(8, axis)), 8)
        similarity = forms.sum(dim=(1, 2))
        drops.append((similarity[0] - similarity[1]).item())
    assert drops[0] > 4 * drops[1], drops


def test_integer_harmonics_alias_as_documented():
    """The opt-in "integer" family wraps: on 16 tokens with 16 bands, offsets Δ and Δ − 16 coincide."""
    enc = make_scene_encoding("rope", 64, frequencies="integer")
    forms, offsets = relative_operators(enc.spatial(axis_angles(16, 1)), 16, 64)
    plus, minus = forms[offsets == 3][0], forms[offsets == 3 - 16][0]
    torch.testing.assert_close(plus, minus, atol=1e-5, rtol=0)  # grid_angles is float32


def test_frequency_family_is_checked():
    with pytest.raises(ValueError, match="frequencies must be one of 'geometric', 'integer', 'wide'"):
        make_scene_encoding("gta", D, frequencies="harmonic")
