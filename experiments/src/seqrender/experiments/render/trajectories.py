"""Camera trajectories for rendering: `orbit`, `spiral`, `interpolate` (between the input cameras)
and a JSON file of poses. Every trajectory returns world-to-camera extrinsics (N, 4, 4), OpenCV
axes, float32; the renderer pairs them with the first input view's intrinsics.

Orbit and spiral circle the scene centre about the scene's up axis (`SceneFrame`), starting at the
first input camera's azimuth, elevation and distance.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import roma
import torch
from torch import Tensor

from seqrender.experiments.data.cameras import look_at_w2c
from seqrender.experiments.evaluate import camera_centres
from seqrender.experiments.render import RenderError

TRAJECTORIES = ("orbit", "spiral", "interpolate")


@dataclass(frozen=True)
class SceneFrame:
    """Where the scene is: centre (3,) and unit up axis (3,), world coordinates."""

    centre: Tensor
    up: Tensor


def scene_frame(extrinsics: Tensor, up: Tensor | None = None) -> SceneFrame:
    """Scene centre = the point nearest (least squares) to every camera's optical axis; with one
    camera (or parallel axes) the point of the first axis nearest the world origin. up: given, or
    the mean of the cameras' up vectors (image −y). extrinsics (V, 4, 4)."""
    e = extrinsics.double()
    centres, forward = camera_centres(e), e[:, 2, :3]                        # (V, 3), (V, 3)
    if up is None:
        up = -e[:, 1, :3].mean(0)
    up = torch.nn.functional.normalize(up.double(), dim=0)
    project = torch.eye(3, dtype=e.dtype) - forward[:, :, None] * forward[:, None, :]   # (V, 3, 3)
    a, b = project.sum(0), (project @ centres[:, :, None]).sum(0)[:, 0]
    if len(e) > 1 and torch.linalg.cond(a) < 1e4:
        centre = torch.linalg.solve(a, b)
    else:
        centre = centres[0] - forward[0] * (forward[0] @ centres[0])
    return SceneFrame(centre.float(), up.float())


def _spherical(frame: SceneFrame, eye: Tensor) -> tuple[Tensor, float, float]:
    """Basis e1 (towards `eye` in the plane ⊥ up), and eye's elevation (rad) and distance."""
    offset = (eye - frame.centre).double()
    up = frame.up.double()
    radius = float(offset.norm())
    flat = offset - (offset @ up) * up
    if flat.norm() < 1e-6 * radius:  # camera straight above/below: any horizontal direction
        flat = torch.linalg.svd(up[None]).Vh[-1]
    e1 = torch.nn.functional.normalize(flat, dim=0)
    return e1, math.asin(max(-1.0, min(1.0, float(offset @ up) / radius))), radius


def _on_sphere(frame: SceneFrame, e1: Tensor, azimuth: Tensor, elevation: Tensor, radius: Tensor) -> Tensor:
    """(N,) angles and radii -> cameras (N, 4, 4) at those positions looking at the centre."""
    up = frame.up.double()
    e2 = torch.linalg.cross(up, e1)
    horizontal = torch.cos(azimuth)[:, None] * e1 + torch.sin(azimuth)[:, None] * e2
    direction = torch.cos(elevation)[:, None] * horizontal + torch.sin(elevation)[:, None] * up
    eye = frame.centre.double() + radius[:, None] * direction
    return look_at_w2c(eye, frame.centre.double().expand_as(eye), up).float()


def orbit(frame: SceneFrame, start: Tensor, views: int) -> Tensor:
    """`views` cameras evenly around the up axis from the first camera `start` (4, 4): same elevation
    and distance, azimuth step 360°/views. -> (views, 4, 4)."""
    e1, elevation, radius = _spherical(frame, camera_centres(start.double()))
    azimuth = torch.arange(views, dtype=torch.float64) * (2 * math.pi / views)
    return _on_sphere(frame, e1, azimuth, torch.full_like(azimuth, elevation), torch.full_like(azimuth, radius))


def spiral(frame: SceneFrame, start: Tensor, views: int, *, amplitude_deg: float = 10.0) -> Tensor:
    """One turn around the up axis whose elevation swings ±amplitude_deg (one sine period) about the
    first camera's. -> (views, 4, 4)."""
    e1, elevation, radius = _spherical(frame, camera_centres(start.double()))
    s = torch.arange(views, dtype=torch.float64) / views
    swing = math.radians(amplitude_deg) * torch.sin(2 * math.pi * s)
    return _on_sphere(frame, e1, 2 * math.pi * s, elevation + swing, torch.full_like(s, radius))


def interpolate(extrinsics: Tensor, views: int) -> Tensor:
    """`views` cameras along the path through the input cameras in order (rotation slerp, linear
    camera centres), spaced evenly in path parameter, ending on the last input. (V, 4, 4) -> (views, 4, 4)."""
    if len(extrinsics) < 2:
        raise RenderError("render.trajectory: 'interpolate' needs at least 2 input views")
    e = extrinsics.double()
    s = torch.linspace(0, len(e) - 1, views, dtype=torch.float64)
    seg = s.floor().long().clamp(max=len(e) - 2)
    frac = s - seg
    rot = interpolate_rotations(e[seg, :3, :3], e[seg + 1, :3, :3], frac)
    centres = camera_centres(e)
    centre = centres[seg] + frac[:, None] * (centres[seg + 1] - centres[seg])
    out = torch.eye(4, dtype=torch.float64).repeat(views, 1, 1)
    out[:, :3, :3] = rot
    out[:, :3, 3] = -(rot @ centre[:, :, None])[..., 0]
    return out.float()


def interpolate_rotations(r0: Tensor, r1: Tensor, s: Tensor) -> Tensor:
    """Geodesic (slerp) interpolation of rotations (N, 3, 3) at fractions s (N,), shortest arc:
    R0 · exp(s · log(R0ᵀ R1)), with roma's rotation-vector maps."""
    relative = roma.rotmat_to_rotvec(r0.transpose(-1, -2) @ r1)                 # (N, 3)
    return r0 @ roma.rotvec_to_rotmat(s[:, None] * relative)


def read_poses(path: Path) -> Tensor:
    """A poses file -> (N, 4, 4) world-to-camera. JSON: {"extrinsics": [4×4 world-to-camera, OpenCV
    axes], ...} or the Blender layout {"frames": [{"transform_matrix": 4×4 camera-to-world, OpenGL axes}]}."""
    from seqrender.posenc.conventions import opengl_c2w_to_opencv_w2c

    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RenderError(f"render.trajectory: {path}: not a readable JSON poses file ({err})") from None
    if isinstance(meta, dict) and isinstance(meta.get("extrinsics"), list):
        return _rigid(path, meta["extrinsics"], "extrinsics").float()
    if isinstance(meta, dict) and isinstance(meta.get("frames"), list):
        c2w = _rigid(path, [f.get("transform_matrix") if isinstance(f, dict) else None for f in meta["frames"]],
                     "frames[].transform_matrix")
        return opengl_c2w_to_opencv_w2c(c2w.double()).float()
    raise RenderError(f"render.trajectory: {path}: needs a list 'extrinsics' (4x4 world-to-camera) "
                     f"or 'frames' with 'transform_matrix' (Blender camera-to-world)")


def _rigid(path: Path, matrices: list, field: str) -> Tensor:
    """Validate a list of 4×4 rigid transforms -> (N, 4, 4) float64."""
    if not matrices:
        raise RenderError(f"render.trajectory: {path}: '{field}' is empty")
    out = []
    for i, m in enumerate(matrices):
        try:
            t = torch.tensor(m, dtype=torch.float64)
        except (TypeError, ValueError):
            t = torch.zeros(0)
        rot = t[:3, :3] if t.shape == (4, 4) else None
        if rot is None or not torch.isfinite(t).all() or not torch.allclose(rot.T @ rot, torch.eye(3, dtype=t.dtype),
                                                                               atol=1e-3) \
                or not torch.allclose(t[3], torch.tensor([0.0, 0, 0, 1], dtype=t.dtype), atol=1e-6) \
                or torch.det(rot) < 0:
            raise RenderError(f"render.trajectory: {path}: {field} {i} is not a rigid 4x4 transform")
        out.append(t)
    return torch.stack(out)


def make_trajectory(name: str, extrinsics: Tensor, views: int, *, up: Tensor | None = None,
                    spiral_amplitude_deg: float = 10.0) -> Tensor:
    """The named trajectory (or a poses file path) for input cameras (V, 4, 4) -> (N, 4, 4)."""
    if name == "interpolate":
        return interpolate(extrinsics, views)
    if name in ("orbit", "spiral"):
        frame = scene_frame(extrinsics, up)
        if name == "orbit":
            return orbit(frame, extrinsics[0], views)
        return spiral(frame, extrinsics[0], views, amplitude_deg=spiral_amplitude_deg)
    path = Path(name)
    if path.suffix.lower() == ".json" and path.is_file():
        return read_poses(path)
    raise RenderError(f"render.trajectory: unknown trajectory {name!r}; choose {', '.join(TRAJECTORIES)} "
                     f"or an existing .json poses file")
