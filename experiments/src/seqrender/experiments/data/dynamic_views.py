"""Extra renders of the embedded 4-D scenes (`dynamic.py`) for training and scoring reconstruction.

Per scene: the grid's own V views at every time step with their coverage (alpha) and camera depth,
and K = V novel cameras at every time step, each midway in azimuth between two consecutive grid
views, at elevation `NOVEL_ELEVATION_DEG` (the grid alternates 15° / 35°). Cached on disk beside the
grid with the embedded datasets' atomic-manifest mechanism. `scene_geometry` gives the true geometry
of one scene at one time step for Chamfer distance and volumetric IoU, seen from 18 scoring cameras
(azimuth 0–300° step 60°, elevations −30/0/30°: half the azimuths of the paper's 36-view protocol,
SPEC §1 "Evaluation", to fit the CPU) at GEOMETRY_SIZE pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from seqrender.experiments.batching import to_device
from seqrender.experiments.data.cameras import look_at_w2c
from seqrender.experiments.data.dynamic import BACKGROUND, Embedded4DConfig, grid_scene
from seqrender.experiments.data.embedded import SPLITS, ensure_generated, single_thread
from seqrender.experiments.data.renderer import render
from seqrender.experiments.data.scenes import OrbitConfig
from seqrender.posenc.conventions import intrinsics_from_fov

FORMAT_VERSION = 1
NOVEL_ELEVATION_DEG = 25.0
GEOMETRY_AZIMUTHS_DEG = tuple(range(0, 360, 60))
GEOMETRY_ELEVATIONS_DEG = (-30.0, 0.0, 30.0)
GEOMETRY_SIZE = 32


@dataclass(frozen=True)
class ReconScenes:
    """S scenes. Grid views: images (S, V, T, 3, H, W) in [0, 1] on white, alpha / depth (S, V, T, H, W)
    (camera z, 0 where empty), intrinsics (S, V, 3, 3), extrinsics (S, V, 4, 4). Novel views:
    novel_images (S, K, T, 3, H, W), novel_alpha (S, K, T, H, W), novel_intrinsics (S, K, 3, 3),
    novel_extrinsics (S, K, 4, 4). indices (S,): each scene's index in the dataset (for its geometry)."""

    images: Tensor
    alpha: Tensor
    depth: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    novel_images: Tensor
    novel_alpha: Tensor
    novel_intrinsics: Tensor
    novel_extrinsics: Tensor
    indices: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def take(self, scenes: Tensor) -> "ReconScenes":
        """The scenes at positions `scenes` (N,) (repeats allowed)."""
        return ReconScenes(**{k: getattr(self, k)[scenes] for k in self.__dataclass_fields__})

    def to(self, device) -> "ReconScenes":
        return to_device(self, device)


def orbit_camera(azimuth: Tensor, elevation: Tensor, *, radius: float, size: int,
                 fov_x: float = OrbitConfig().fov_x) -> tuple[Tensor, Tensor]:
    """Cameras at `azimuth`, `elevation` (N,) radians on a sphere of `radius`, looking at the origin
    (world z up): intrinsics (N, 3, 3) for size × size pixels, extrinsics (N, 4, 4) world-to-camera."""
    eye = radius * torch.stack([torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth),
                                torch.sin(elevation)], dim=-1)
    extrinsics = look_at_w2c(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]))
    intrinsics = intrinsics_from_fov(fov_x, width=size, height=size).expand(len(eye), 3, 3).clone()
    return intrinsics, extrinsics


def novel_cameras(extrinsics: Tensor, *, size: int) -> tuple[Tensor, Tensor]:
    """Grid cameras (V, 4, 4) -> V novel cameras, camera i midway in azimuth between grid views i and
    i + 1 (cyclic), at NOVEL_ELEVATION_DEG and the grid's mean radius: intrinsics, extrinsics. When
    the views sweep an arc (`view_step_deg`), the last one is half the median step past the arc's end
    rather than across the open side of the orbit."""
    centres = -(extrinsics[:, :3, :3].transpose(1, 2) @ extrinsics[:, :3, 3:]).squeeze(-1)     # (V, 3)
    azimuth = torch.atan2(centres[:, 1], centres[:, 0])
    gap = torch.remainder(azimuth.roll(-1) - azimuth, 2 * math.pi)
    typical = gap.median()
    gap = torch.where(gap > 1.5 * typical, typical, gap)
    middle = azimuth + 0.5 * gap
    elevation = torch.full_like(middle, math.radians(NOVEL_ELEVATION_DEG))
    return orbit_camera(middle, elevation, radius=float(centres.norm(dim=-1).mean()), size=size)


def geometry_cameras(*, size: int, radius: float = OrbitConfig().radius) -> tuple[Tensor, Tensor]:
    """The 18 scoring cameras (6 azimuths × 3 elevations): intrinsics (18, 3, 3), extrinsics (18, 4, 4)."""
    az, el = torch.meshgrid(torch.tensor(GEOMETRY_AZIMUTHS_DEG, dtype=torch.float32),
                            torch.tensor(GEOMETRY_ELEVATIONS_DEG), indexing="ij")
    return orbit_camera(torch.deg2rad(az.flatten()), torch.deg2rad(el.flatten()), radius=radius, size=size)


def render_scene_views(config: Embedded4DConfig, index: int) -> dict[str, Tensor]:
    """Scene `index`: the grid views and novel views of every time step (see ReconScenes; no S axis)."""
    scene, size = grid_scene(config, index), config.resolution
    novel_k, novel_e = novel_cameras(scene.extrinsics, size=size)
    v = len(scene.extrinsics)
    intrinsics, extrinsics = torch.cat([scene.intrinsics, novel_k]), torch.cat([scene.extrinsics, novel_e])
    outs = [render(scene.at(t), intrinsics, extrinsics, height=size, width=size, supersample=config.supersample)
            for t in range(config.times)]
    images = torch.stack([o.composite(BACKGROUND) for o in outs], dim=1).clamp(0, 1)     # (V + K, T, 3, H, W)
    alpha, depth = torch.stack([o.alpha for o in outs], dim=1), torch.stack([o.depth for o in outs], dim=1)
    return {"images": images[:v], "alpha": alpha[:v], "depth": depth[:v], "intrinsics": scene.intrinsics,
            "extrinsics": scene.extrinsics, "novel_images": images[v:], "novel_alpha": alpha[v:],
            "novel_intrinsics": novel_k, "novel_extrinsics": novel_e}


def _generate(folder, config: Embedded4DConfig, *, progress: bool) -> None:
    with single_thread():
        scenes = [render_scene_views(config, i) for i in tqdm(range(config.num_scenes), disable=not progress,
                                                                  desc="rendering reconstruction views", unit="scene")]
    cut = config.num_scenes - config.heldout_scenes
    for split, part in zip(SPLITS, (range(0, cut), range(cut, config.num_scenes))):
        tensors = {k: torch.stack([scenes[i][k] for i in part]) for k in scenes[0]}
        for k in ("images", "novel_images"):
            tensors[k] = (tensors[k] * 255).round().to(torch.uint8)
        tensors["indices"] = torch.tensor(list(part))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / f"{split}.safetensors"))


def recon_scenes(config: Embedded4DConfig, *, split: str = "train", progress: bool = True) -> ReconScenes:
    """The `split` scenes of `config` with depth, coverage and novel views, generated first if needed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = config.folder().with_name(config.folder().name + "-recon")
    manifest = {**config.manifest(), "kind": "embedded4d-recon", "recon_format": FORMAT_VERSION,
                "novel_elevation_deg": NOVEL_ELEVATION_DEG}
    folder = ensure_generated(folder, manifest, lambda partial: _generate(partial, config, progress=progress))
    t = load_file(str(folder / f"{split}.safetensors"))
    for k in ("images", "novel_images"):
        t[k] = t[k].float() / 255
    return ReconScenes(**t)


@dataclass
class SceneGeometry:
    """points (M, 3): the true surface seen from the 18 scoring cameras; occupancy (R, R, R) bool at
    `metrics.voxel_centres(R, -extent, extent)`; the scoring cameras intrinsics (18, 3, 3), extrinsics
    (18, 4, 4) at `size` × `size` pixels."""

    points: Tensor
    occupancy: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    size: int


def true_geometry(primitives, *, voxels: Tensor, size: int = GEOMETRY_SIZE) -> SceneGeometry:
    """The geometry of `primitives` (a list of data.primitives.Primitive); voxels (R, R, R, 3) centres."""
    from seqrender.recon.geometry import unproject_depth

    intrinsics, extrinsics = geometry_cameras(size=size)
    out = render(primitives, intrinsics, extrinsics, height=size, width=size)
    points = unproject_depth(out.depth, intrinsics, extrinsics)[out.alpha > 0.5]          # (M, 3)
    flat = voxels.reshape(-1, 3)
    inside = torch.stack([p.contains(flat) for p in primitives]).any(dim=0)
    return SceneGeometry(points, inside.reshape(voxels.shape[:-1]), intrinsics, extrinsics, size)


def scene_geometry(config: Embedded4DConfig, index: int, time: int, *, voxels: Tensor,
                   size: int = GEOMETRY_SIZE) -> SceneGeometry:
    """True geometry of scene `index` at time step `time`; voxels (R, R, R, 3) centres."""
    return true_geometry(grid_scene(config, index).at(time), voxels=voxels, size=size)


__all__ = ["ReconScenes", "SceneGeometry", "geometry_cameras", "novel_cameras", "orbit_camera",
           "recon_scenes", "render_scene_views", "scene_geometry", "true_geometry"]
