"""COLMAP sparse models (`dataset=colmap`), binary or text, read with pycolmap:

    <root>/<scene>/sparse/0/{cameras,images,points3D}.{bin,txt}   (COLMAP >= 3.12 adds rigs, frames)
    <root>/<scene>/images/<image name as in images.bin/txt>

COLMAP already stores OpenCV world-to-camera poses (`cam_from_world`: quaternion + translation) and
pixel intrinsics with pixel centres at +0.5, so the conversion is the identity; only the pinhole
part of a camera model is used (undistort first, e.g. `colmap image_undistorter`, for lenses with
strong distortion). Frames are the registered images sorted by name.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqrender.experiments.data.scene_dataset import (DataError, Scene, SceneDataset, SceneFormatConfig,
                                                      build_scene_dataset, data_root, rigid)

MODEL_FILES = ("cameras.bin", "cameras.txt")


@dataclass(frozen=True)
class ColmapConfig(SceneFormatConfig):
    model_dir: str = "sparse/0"  # the sparse model, relative to the scene folder
    images_dir: str = "images"  # the images, relative to the scene folder


def colmap_dataset(config: ColmapConfig, *, split: str = "train", views: int = 4, seed: int = 0) -> SceneDataset:
    """Builder of dataset "colmap": every folder of `config.root` with a sparse model is a scene."""
    root = data_root(config, f"COLMAP scenes (<scene>/{config.model_dir}/cameras.bin|txt + <scene>/{config.images_dir}/)")
    readers = [(d.name, lambda d=d: read_colmap_scene(d / config.model_dir, d / config.images_dir, name=d.name))
               for d in root.iterdir() if any((d / config.model_dir / f).is_file() for f in MODEL_FILES)]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed)


def read_colmap_scene(model_dir: Path, images_dir: Path, *, name: str) -> Scene:
    """Registered images of the sparse model in `model_dir`, sorted by image name."""
    import pycolmap

    try:
        model = pycolmap.Reconstruction(str(model_dir))
    except (ValueError, RuntimeError) as err:
        reason = " ".join(str(err).split())
        raise DataError(f"{model_dir}: cannot read the COLMAP model ({reason[:160]})") from None
    images = sorted((im for im in model.images.values() if im.has_pose), key=lambda im: im.name)
    if not images:
        raise DataError(f"{model_dir}: the COLMAP model has no registered images")
    poses = torch.from_numpy(np.stack([im.cam_from_world().matrix() for im in images])).double()
    intrinsics = torch.from_numpy(np.stack([model.cameras[im.camera_id].calibration_matrix() for im in images])).double()
    source = next((model_dir / f"images{ext}" for ext in (".bin", ".txt") if (model_dir / f"images{ext}").is_file()),
                  model_dir)
    sizes = {(model.cameras[im.camera_id].height, model.cameras[im.camera_id].width) for im in images}
    return Scene(name, source, [images_dir / im.name for im in images], intrinsics,
                 rigid(poses[:, :, :3], poses[:, :, 3]), labels=[im.name for im in images],
                 size=next(iter(sizes)) if len(sizes) == 1 else None)
