"""Reader and writer for the Blender / NeRF-synthetic layout.

    <scene>/transforms_<split>.json   {"camera_angle_x": fov_x, "frames": [
                                         {"file_path": "./<split>/r_0", "transform_matrix": 4×4}, ...]}
    <scene>/<split>/r_0.png           RGBA (straight alpha) or RGB

`transform_matrix` is camera-to-world in Blender/OpenGL camera axes (x right, y up, z backward);
`file_path` usually has no extension (".png" is appended). The reader converts cameras ONCE to the
project convention (OpenCV world-to-camera, pixel intrinsics, SPEC §4), composites RGBA onto a
background colour, and resizes with the intrinsics scaled to match. The same reader serves the real
nerf_synthetic data and the embedded procedural dataset.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from seqrender.experiments.data.cameras import fov_x_from_intrinsics, scale_intrinsics
from seqrender.experiments.data.scene_dataset import composite, read_rgba
from seqrender.posenc.conventions import intrinsics_from_fov, opencv_w2c_to_opengl_c2w, opengl_c2w_to_opencv_w2c

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass
class BlenderCameras:
    """The parsed `transforms_<split>.json` of one scene (no images read)."""

    transforms_path: Path
    image_paths: list[Path]  # (V,) resolved image files
    camera_angle_x: float
    extrinsics: Tensor  # (V, 4, 4) float32, OpenCV world-to-camera

    def __len__(self) -> int:
        return len(self.image_paths)


@dataclass
class BlenderViews:
    images: Tensor  # (V, 3, H, W) float32 in [0, 1], composited onto the background
    intrinsics: Tensor  # (V, 3, 3) float32, pixels of the (H, W) grid
    extrinsics: Tensor  # (V, 4, 4) float32, OpenCV world-to-camera


def read_cameras(scene_dir: str | Path, *, split: str = "train") -> BlenderCameras:
    """Parse and validate `scene_dir/transforms_<split>.json`; errors name the file and frame."""
    path = Path(scene_dir) / f"transforms_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a Blender/NeRF-synthetic scene folder)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    fov = meta.get("camera_angle_x") if isinstance(meta, dict) else None
    if not isinstance(fov, (int, float)) or not 0.0 < fov < math.pi:
        raise ValueError(f"{path}: 'camera_angle_x' must be a number in (0, pi) radians, got {fov!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: 'frames' must be a non-empty list")
    parsed = [_parse_frame(path, i, frame) for i, frame in enumerate(frames)]
    c2w = torch.tensor(np.stack([m for _, m in parsed]), dtype=torch.float64)
    return BlenderCameras(path, [p for p, _ in parsed], float(fov),
                          opengl_c2w_to_opencv_w2c(c2w).to(torch.float32))


def _parse_frame(path: Path, index: int, frame: object) -> tuple[Path, np.ndarray]:
    """One entry of 'frames' -> (image path, (4, 4) camera-to-world)."""
    where = f"{path}: frame {index}"
    if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
        raise ValueError(f"{where}: needs a string 'file_path'")
    where = f"{where} ({frame['file_path']})"
    try:
        matrix = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: 'transform_matrix' must be a 4x4 list of numbers ({err})") from err
    if matrix.shape != (4, 4):
        raise ValueError(f"{where}: 'transform_matrix' must be a finite 4x4 matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        bad = ", ".join(f"[{i}][{j}]={matrix[i, j]}" for i, j in zip(*np.nonzero(~np.isfinite(matrix))))
        raise ValueError(f"{where}: 'transform_matrix' must be finite, but it holds NaN/Inf at {bad}")
    rotation = matrix[:3, :3]
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6) or not np.allclose(
            rotation.T @ rotation, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise ValueError(f"{where}: 'transform_matrix' must be a rigid camera-to-world transform (rotation "
                         f"and translation, last row [0, 0, 0, 1]), got {matrix.tolist()}")
    image = path.parent / frame["file_path"]
    if image.suffix.lower() not in _IMAGE_SUFFIXES:
        image = image.with_name(image.name + ".png")
    return image, matrix


def load_views(cameras: BlenderCameras, frames: Sequence[int] | None = None, *,
               resolution: int | tuple[int, int] | None = None,
               background: Sequence[float] = (1.0, 1.0, 1.0)) -> BlenderViews:
    """Read the images of `frames` (default: all) of a scene.

    resolution: None (native), an int (square) or (height, width); images are resized with
    antialiasing and the intrinsics scaled to the new grid. background: RGB in [0, 1] that RGBA
    images are composited onto.
    """
    frames = list(range(len(cameras))) if frames is None else [int(f) for f in frames]
    for f in frames:
        if not 0 <= f < len(cameras):
            raise ValueError(f"{cameras.transforms_path}: frame {f} out of range (scene has {len(cameras)} frames)")
    if len(background) != 3:
        raise ValueError(f"background must be 3 floats (RGB in [0, 1]), got {background!r}")
    rgb = [_read_image(cameras, f, np.asarray(background, dtype=np.float32)) for f in frames]
    native = rgb[0].shape[1:]
    for f, image in zip(frames, rgb):
        if image.shape[1:] != native:
            raise ValueError(f"{cameras.transforms_path}: frame {f} ({cameras.image_paths[f]}): size "
                             f"{tuple(image.shape[1:])} differs from frame {frames[0]}'s {tuple(native)}")
    images = torch.stack(rgb)
    intrinsics = intrinsics_from_fov(cameras.camera_angle_x, width=native[1], height=native[0])
    size = _parse_resolution(resolution, native)
    if size != native:
        images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True,
                                                 align_corners=False).clamp(0.0, 1.0)
        intrinsics = scale_intrinsics(intrinsics, scale_x=size[1] / native[1], scale_y=size[0] / native[0])
    return BlenderViews(images, intrinsics.expand(len(frames), 3, 3).clone(), cameras.extrinsics[frames].clone())


def load_scene(scene_dir: str | Path, *, split: str = "train", frames: Sequence[int] | None = None,
               resolution: int | tuple[int, int] | None = None,
               background: Sequence[float] = (1.0, 1.0, 1.0)) -> BlenderViews:
    """`read_cameras` + `load_views` in one call."""
    return load_views(read_cameras(scene_dir, split=split), frames, resolution=resolution, background=background)


def _parse_resolution(resolution: int | tuple[int, int] | None, native: tuple[int, int]) -> tuple[int, int]:
    if resolution is None:
        return tuple(native)
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"resolution must be None, a positive int or (height, width), got {resolution!r}")
    return size


def _read_image(cameras: BlenderCameras, frame: int, background: np.ndarray) -> Tensor:
    """-> (3, H, W) float32 in [0, 1]: the straight-alpha RGBA image composited onto `background`
    (numpy, not torch: tiny per-image ops in torch's thread pool were 5x slower on a busy CPU)."""
    rgba = read_rgba(cameras.image_paths[frame], f"{cameras.transforms_path}: frame {frame}")
    return torch.from_numpy(np.ascontiguousarray(composite(rgba, background).transpose(2, 0, 1)))


def write_scene(scene_dir: str | Path, rgba: Tensor, intrinsics: Tensor, extrinsics: Tensor, *,
                split: str = "train") -> Path:
    """Write V views as `scene_dir/transforms_<split>.json` + `<split>/r_<i>.png` (RGBA).

    rgba: (V, 4, H, W) straight-alpha colour in [0, 1]; intrinsics: (V, 3, 3) with square pixels and
    the principal point at the image centre (all `camera_angle_x` can express); extrinsics:
    (V, 4, 4) OpenCV world-to-camera. Returns the transforms file's path.
    """
    height, width = rgba.shape[-2:]
    expected = intrinsics_from_fov(fov_x_from_intrinsics(intrinsics[0], width=width), width=width, height=height)
    if not torch.allclose(intrinsics.float(), expected.expand_as(intrinsics), rtol=1e-4, atol=1e-3):
        raise ValueError("intrinsics must all be equal, with fx == fy and the principal point at the image "
                         "centre: camera_angle_x cannot express anything else")
    scene_dir = Path(scene_dir)
    (scene_dir / split).mkdir(parents=True, exist_ok=True)
    pixels = (rgba.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    c2w = opencv_w2c_to_opengl_c2w(extrinsics.to(torch.float64))
    frames = []
    for i, (image, matrix) in enumerate(zip(pixels, c2w)):
        Image.fromarray(image).save(scene_dir / split / f"r_{i}.png", compress_level=1)
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": matrix.tolist()})
    meta = {"camera_angle_x": fov_x_from_intrinsics(intrinsics[0], width=width), "frames": frames}
    path = scene_dir / f"transforms_{split}.json"
    path.write_text(json.dumps(meta, indent=1))
    return path
