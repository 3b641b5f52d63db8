"""LLFF layout (`dataset=llff`): one folder per scene,

    <root>/<scene>/poses_bounds.npy    (N, 17) float: per image a 3×5 matrix, row-major, then near, far
    <root>/<scene>/images/*.{png,jpg}  the N images, sorted by name

Each 3×5 matrix is [c2w rotation | camera centre | (H, W, focal)] with the rotation's columns in
LLFF's camera axes (down, right, backward). Camera-to-world in OpenCV axes (right, down, forward)
takes columns (1, 0, −2); the world-to-camera is its inverse. The focal length is in pixels of an
H×W image, principal point at the centre; images of another size (e.g. `images_4/`) scale it.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqrender.experiments.data.scene_dataset import (DataError, Scene, SceneDataset, SceneFormatConfig,
                                                      build_scene_dataset, data_root, frame_files, pinhole)
from seqrender.posenc.conventions import invert_se3

POSES_FILE = "poses_bounds.npy"


@dataclass(frozen=True)
class LLFFConfig(SceneFormatConfig):
    images_dir: str = "images"  # e.g. images_4 for LLFF's downsampled copies


def llff_dataset(config: LLFFConfig, *, split: str = "train", views: int = 4, seed: int = 0) -> SceneDataset:
    """Builder of dataset "llff": every folder of `config.root` holding poses_bounds.npy is a scene."""
    root = data_root(config, f"LLFF scenes (<scene>/{POSES_FILE} + <scene>/{config.images_dir}/)")
    readers = [(d.name, lambda d=d: read_llff_scene(d, images_dir=config.images_dir))
               for d in root.iterdir() if (d / POSES_FILE).is_file()]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed)


def read_llff_scene(scene_dir: Path, *, images_dir: str = "images") -> Scene:
    """Parse `scene_dir/poses_bounds.npy` and pair its rows with the sorted images."""
    path = scene_dir / POSES_FILE
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read as a .npy array ({err})") from None
    if array.ndim != 2 or array.shape[1] != 17 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: expected an (N, 17) array of numbers, got shape {array.shape}")
    images = frame_files(scene_dir / images_dir)
    if len(images) != len(array):
        raise DataError(f"{path}: has {len(array)} poses but {scene_dir / images_dir} has {len(images)} images")
    mats = torch.from_numpy(array[:, :15].astype(np.float64)).reshape(-1, 3, 5)
    hwf = mats[:, :, 4]
    if not (torch.isfinite(hwf).all() and (hwf > 0).all() and (hwf[:, :2] == hwf[0, :2]).all()):
        raise DataError(f"{path}: the (height, width, focal) column must be positive and one image size, "
                        f"got {hwf[0].tolist()}")
    height, width, focal = hwf.unbind(-1)
    return Scene(scene_dir.name, path, images, pinhole(focal, focal, width / 2, height / 2),
                 llff_to_opencv_w2c(mats[:, :, :4]), size=(float(height[0]), float(width[0])))


def llff_to_opencv_w2c(c2w_llff: Tensor) -> Tensor:
    """(V, 3, 4) LLFF camera-to-world (columns down, right, backward, centre) -> (V, 4, 4) OpenCV w2c."""
    c2w = torch.zeros(c2w_llff.shape[0], 4, 4, dtype=torch.float64)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = c2w_llff[:, :, 1], c2w_llff[:, :, 0], -c2w_llff[:, :, 2]
    c2w[:, :3, 3], c2w[:, 3, 3] = c2w_llff[:, :, 3], 1.0
    return invert_se3(c2w)
