"""Kaleido's unified positional encoding (SPEC §1): one ``posenc=`` choice for a whole model.

Channel allocation of a head (``d = head_dim``), every band a 2×2 block of adjacent channels:
- spatial attention: ``θ_h`` on ``[0, d/2)``, ``θ_w`` on ``[d/2, d)`` (d/4 bands each);
- temporal/3D attention: ``θ_h`` on ``[0, d/4)``, ``θ_w`` on ``[d/4, d/2)`` (d/8 bands each) and on
  ``[d/2, d)`` either ``θ_t`` (video, d/4 bands) or the 4×4 pose repeated d/8 times (3D).
Band ``i`` of an angle ``θ`` is ``ω_i·θ``. ``frequencies="geometric"`` (default): ``ω_i = ½·16^(−i/(n−1))``,
fractional, so every band turns at most half a turn over an axis's [0, 2π) and no two relative
offsets alias; ``"integer"``: the SO(2) harmonics ``ω_i = i`` (1-based), which wrap (band n of an
n-token axis is the identity; bands k and n − k are conjugates; first and last frames look adjacent);
``"wide"``: ``ω_i = 2·64^(−i/(n−1))``, the geometric low bands with sharper top bands (neighbours told
apart; the bands below ½ keep relative offsets from aliasing, but similarity no longer falls monotonically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from .camera import check_pose_groups
from .plucker import plucker_rays
from .protocol import IdentityTransform, PositionalTransform
from .rope import check_choice, rope_angles
from .transform import BlockTransform, PoseBlocks, Rotary

KINDS = ("none", "rope", "cape", "gta", "plucker", "gta_plucker")
_RAYS = ("plucker", "gta_plucker")   # kinds with Plücker input channels
_GTA = ("gta", "gta_plucker")        # kinds with GTA (q, k, v and output transformed)
FREQUENCIES = ("geometric", "integer", "wide")
_LAYOUT = "interleaved"


def grid_angles(height: int, width: int, *, device: torch.device | str | None = None) -> Tensor:
    """``(height·width, 2)`` angles ``(θ_h, θ_w) = (2π·row/H, 2π·col/W)`` in [0, 2π), row-major."""
    rows = torch.arange(height, dtype=torch.float32, device=device) * (2 * math.pi / height)
    cols = torch.arange(width, dtype=torch.float32, device=device) * (2 * math.pi / width)
    th, tw = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([th.flatten(), tw.flatten()], dim=-1)


def frame_angles(num_frames: int, *, device: torch.device | str | None = None) -> Tensor:
    """``(num_frames,)`` angles ``θ_t = 2π·t/T`` in [0, 2π), linear from the first frame to the last."""
    return torch.arange(num_frames, dtype=torch.float32, device=device) * (2 * math.pi / num_frames)


def normalise_translations(extrinsics: Tensor, *, active: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``(B, V, 4, 4)`` → same, translations scaled so the largest ``‖t‖`` of each scene is 1.

    active: ``(B, V)`` bool or None; the largest ``‖t‖`` is taken over the active views only
    (inactive views are scaled too, but never set the scale).
    """
    norms = extrinsics[..., :3, 3].norm(dim=-1)  # (B, V)
    if active is not None:
        norms = norms.masked_fill(~active, 0.0)
    scale = norms.amax(dim=-1).clamp_min(eps)  # (B,)
    trans = extrinsics[..., :3, 3:] / scale[:, None, None, None]
    return torch.cat([torch.cat([extrinsics[..., :3, :3], trans], dim=-1), extrinsics[..., 3:, :]], dim=-2)


@dataclass(frozen=True)
class KaleidoEncoding:
    """SceneEncoding for ``kind`` in ``KINDS`` (see ``make_scene_encoding``)."""

    kind: str
    head_dim: int
    frequencies: str = "geometric"

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_choice("frequencies", self.frequencies, FREQUENCIES)
        if self.kind != "none" and self.head_dim % 8:
            raise ValueError(f"head_dim must be divisible by 8 for posenc {self.kind!r}; got {self.head_dim}")

    @property
    def input_channels(self) -> int:
        return 6 if self.kind in _RAYS else 0

    @property
    def _values(self) -> bool:
        return self.kind in _GTA

    def input_features(self, intrinsics: Tensor, extrinsics: Tensor, height: int, width: int) -> Tensor | None:
        """``(B, V, 3, 3)``, ``(B, V, 4, 4)`` → ``(B, V, 6, height, width)`` rays relative to view 0, or None."""
        if self.kind not in _RAYS:
            return None
        rays = plucker_rays(intrinsics, extrinsics, height, width, order="dm", relative=True)
        return rearrange(rays, "b v h w c -> b v c h w")

    def spatial(self, hw: Tensor) -> PositionalTransform:
        """hw: ``(N, 2)`` angles; transform on ``(B·V, heads, N, d)`` with d/4 bands per axis."""
        if self.kind == "none":
            return IdentityTransform()
        bands = self.head_dim // 4
        angles = rope_angles(hw, (bands, bands), family=self.frequencies)[None]
        return BlockTransform(rotary=Rotary(angles, layout=_LAYOUT), values=self._values)

    def temporal(self, hw: Tensor, extrinsics: Tensor | None, times: Tensor | None) -> PositionalTransform:
        """hw: ``(B', N', 2)``; extrinsics: ``(B', G, 4, 4)`` or None; times: ``(B', N')`` or None.

        3D data passes extrinsics, video passes times (not both). ``rope``/``plucker`` never encode
        the camera; ``cape``/``gta`` put the pose on the last d/2 channels. Extrinsics hold one
        pose per token (``G = N'``) or one per run of ``N'/G`` contiguous tokens, e.g. ``(B·nW, V,
        4, 4)`` for window_partition order ``(V, K, K)``: grouped poses use fused, faster GEMMs.
        """
        if self.kind == "none":
            return IdentityTransform()
        if extrinsics is not None and times is not None:
            raise ValueError("temporal(): pass extrinsics (3D data) or times (video), not both")
        d = self.head_dim
        angles = rope_angles(hw, (d // 8, d // 8), family=self.frequencies)
        if times is not None:
            angles = torch.cat([angles, rope_angles(times[..., None], (d // 4,), family=self.frequencies)], dim=-1)
        pose = None
        if extrinsics is not None and self.kind in ("cape", *_GTA):
            groups = extrinsics.shape[-3]
            check_pose_groups(hw.shape[-2], groups)
            pose = PoseBlocks(extrinsics, start=d // 2, repeats=d // 8, fused=groups < hw.shape[-2])
        return BlockTransform(rotary=Rotary(angles, layout=_LAYOUT), pose=pose, values=self._values)


def make_scene_encoding(kind: str, head_dim: int, *, frequencies: str = "geometric") -> KaleidoEncoding:
    """The encoding of one Kaleido ablation row.

    ``none``: nothing; ``rope``: 2D RoPE in both attentions (θ_t too for video), no camera;
    ``cape``: 2D RoPE + 3D CaPE on q, k; ``gta``: GTA[2D RoPE + 3D] on q, k, v and the output;
    ``plucker``: 2D RoPE + 6 Plücker input channels relative to the first camera;
    ``gta_plucker``: ``gta`` and the Plücker input channels together (per-pixel rays beside the
    per-view group transform).
    ``frequencies``: the band family of every angle, ``"geometric"``, ``"integer"`` or ``"wide"`` (see module doc).
    """
    return KaleidoEncoding(kind=kind, head_dim=head_dim, frequencies=frequencies)
