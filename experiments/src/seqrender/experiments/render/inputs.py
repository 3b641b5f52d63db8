"""The scene a render starts from, at the model's resolution: `render.scene` names

- `heldout:<i>`: held-out scene i of the checkpoint's embedded dataset (ground truth is rendered for
  every trajectory camera, so the render is scored);
- a Blender / NeRF-synthetic scene folder (`transforms_<split>.json`);
- a folder of plain photos (.png/.jpg): cameras from structure-from-motion (sfm.py).

Embedded and Blender scenes use `render.references` of their views (spread evenly over the scene's
views) as the inputs; photos are all inputs. Every problem is a RenderError naming the field/file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from seqrender.experiments.config import RunConfig
from seqrender.experiments.data.cameras import scale_intrinsics
from seqrender.experiments.data.embedded import EmbeddedConfig
from seqrender.experiments.render import RenderError
from seqrender.experiments.render.generate import Views

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
Z_UP = torch.tensor([0.0, 0.0, 1.0])  # world up of the Blender layout (and the embedded scenes)


@dataclass
class Scene:
    """views: the inputs; up: world up axis (3,) or None (estimate from the cameras);
    truth(intrinsics (T, 3, 3), extrinsics (T, 4, 4)) -> (T, 3, H, W) ground truth, when known."""

    name: str
    views: Views
    up: Tensor | None
    truth: Callable[[Tensor, Tensor], Tensor] | None = None


def spread(available: int, count: int) -> list[int]:
    """`count` view indices spread evenly over `available` views, starting at 0."""
    if not 1 <= count <= available:
        raise RenderError(f"render.references: {count} references asked, the scene has {available} views")
    return [round(k * available / count) for k in range(count)]


def load_scene(source: str, cfg: RunConfig, *, references: int, split: str, workdir: Path) -> Scene:
    """`render.scene` -> Scene at the resolution of cfg.dataset (the checkpoint's training data)."""
    if not source:
        raise RenderError("render.scene: required: heldout:<i>, a Blender scene folder or a folder of photos")
    if source.startswith("heldout:"):
        return heldout_scene(source, cfg, references=references)
    path = Path(source)
    if not path.exists():
        raise RenderError(f"render.scene: {path}: no such file or folder")
    if path.is_dir() and (path / f"transforms_{split}.json").is_file():
        return blender_scene(path, cfg, references=references, split=split)
    return photo_scene(path, resolution=cfg.dataset.config.resolution, workdir=workdir)


def heldout_scene(source: str, cfg: RunConfig, *, references: int) -> Scene:
    from seqrender.experiments.data import render
    from seqrender.experiments.data.embedded import scene_primitives

    config = cfg.dataset.config
    if not isinstance(config, EmbeddedConfig):
        raise RenderError(f"render.scene: {source} needs a checkpoint trained on dataset 'embedded' "
                          f"(this one: {cfg.dataset.name!r})")
    try:
        index = int(source.split(":", 1)[1])
        if not 0 <= index < config.heldout_scenes:
            raise ValueError
    except ValueError:
        raise RenderError(f"render.scene: {source}: held-out scenes are heldout:0 .. "
                          f"heldout:{config.heldout_scenes - 1}") from None
    dataset = cfg.dataset.build(split="heldout")
    item = dataset.get_item(index, frames=spread(len(dataset.cameras[index]), references))
    primitives, _ = scene_primitives(config, config.num_scenes - config.heldout_scenes + index)

    def truth(intrinsics: Tensor, extrinsics: Tensor) -> Tensor:
        size = config.resolution
        out = render(primitives, intrinsics, extrinsics, height=size, width=size, supersample=config.supersample)
        return out.composite(dataset.background).clamp(0, 1)

    views = Views(item["images"], item["intrinsics"], item["extrinsics"])
    return Scene(f"heldout_{index}", views, Z_UP, truth)


def blender_scene(path: Path, cfg: RunConfig, *, references: int, split: str) -> Scene:
    from seqrender.experiments.data import load_views, read_cameras

    try:
        cameras = read_cameras(path, split=split)
        views = load_views(cameras, spread(len(cameras), references), resolution=cfg.dataset.config.resolution)
    except (OSError, ValueError) as err:  # the reader's messages name the file and frame
        raise RenderError(f"render.scene: {err}") from None
    return Scene(path.name, Views(views.images, views.intrinsics, views.extrinsics), Z_UP)


def image_files(path: Path) -> list[Path]:
    """The photos of a folder (sorted) or the single given file; RenderError if there are none."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RenderError(f"render.scene: {path}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_images(files: list[Path]) -> np.ndarray:
    """(V, H, W, 3) uint8 RGB; one size for all, else RenderError naming the odd file."""
    pictures = []
    for f in files:
        try:
            with Image.open(f) as image:
                pictures.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise RenderError(f"render.scene: {f}: unreadable image ({err})") from None
        if pictures[-1].shape != pictures[0].shape:
            h, w = pictures[-1].shape[:2]
            raise RenderError(f"render.scene: {f}: size {w}x{h} differs from {files[0].name}'s "
                              f"{pictures[0].shape[1]}x{pictures[0].shape[0]}; photos must share one size")
    return np.stack(pictures)


def to_model_resolution(pixels: np.ndarray, intrinsics: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Centre-crop to a square, resize to size×size (antialiased) and move the intrinsics along.
    pixels (V, H, W, 3) uint8, intrinsics (V, 3, 3) -> images (V, 3, size, size) in [0, 1], (V, 3, 3)."""
    h, w = pixels.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = torch.from_numpy(pixels[:, top:top + side, left:left + side]).permute(0, 3, 1, 2).float() / 255
    images = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                                             align_corners=False).clamp(0, 1)
    shifted = intrinsics.clone()
    shifted[:, 0, 2] -= left
    shifted[:, 1, 2] -= top
    return images, scale_intrinsics(shifted, scale_x=size / side, scale_y=size / side)


def photo_scene(path: Path, *, resolution: int, workdir: Path) -> Scene:
    """Plain photos: validate them, recover the cameras by SfM, bring them to the model's size."""
    from seqrender.experiments.render.sfm import reconstruct

    files = image_files(path)
    pixels = read_images(files)
    if len(files) < 2:
        raise RenderError(f"render.scene: {path}: structure-from-motion needs at least 2 photos, got 1")
    cameras = reconstruct(files, workdir=workdir)
    keep = [i for i, f in enumerate(files) if f.name in cameras.names]
    images, intrinsics = to_model_resolution(pixels[keep], cameras.intrinsics, resolution)
    return Scene(path.name, Views(images, intrinsics, cameras.extrinsics), None)
