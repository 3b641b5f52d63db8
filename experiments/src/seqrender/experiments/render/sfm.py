"""Cameras of plain photos by structure-from-motion with pycolmap, on the CPU: SIFT features,
exhaustive matching, incremental mapping; one shared pinhole camera (a photo set from one camera).

The world frame and scale of the result are arbitrary; Kaleido re-expresses poses in its first
reference camera's frame with normalised translations, so they do not matter to it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqrender.experiments.render import RenderError


@dataclass
class SfmCameras:
    """names: the registered photos' file names (in input order); intrinsics (V, 3, 3) pixels of the
    photos; extrinsics (V, 4, 4) world-to-camera, OpenCV axes (COLMAP's convention)."""

    names: list[str]
    intrinsics: Tensor
    extrinsics: Tensor


def reconstruct(files: list[Path], *, workdir: Path, max_features: int = 8192, seed: int = 0) -> SfmCameras:
    """Run SfM on `files` (all in one folder; mapping seeded by `seed`). RenderError with the
    reason when it fails."""
    import pycolmap

    pycolmap.logging.minloglevel = 2  # errors only: COLMAP's info log is thousands of lines
    pycolmap.set_random_seed(seed)    # RANSAC and mapping draws: repeatable results
    folder = files[0].parent
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "sparse").mkdir(parents=True)
    database = workdir / "database.db"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = max_features
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"
    names = [f.name for f in files]
    print(f"structure-from-motion on {len(files)} photos (SIFT, exhaustive matching, incremental mapping)")
    pycolmap.extract_features(database, folder, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = seed
    options.num_threads = 1           # multi-threaded bundle adjustment is not repeatable
    maps = pycolmap.incremental_mapping(database, folder, workdir / "sparse", options=options)
    if not maps:
        raise RenderError(f"render.scene: {folder}: structure-from-motion failed: no two photos share enough "
                          f"matched SIFT features to start a reconstruction (need texture and overlap)")
    best = max(maps.values(), key=lambda rec: rec.num_reg_images())
    print(f"structure-from-motion: {best.num_reg_images()} of {len(files)} photos registered, "
          f"{best.num_points3D()} points, mean reprojection error {best.compute_mean_reprojection_error():.2f} px")
    return _cameras(best, names, folder)


def _cameras(rec, names: list[str], folder: Path) -> SfmCameras:
    by_name = {image.name: image for image in rec.images.values()}
    registered = [n for n in names if n in by_name]
    if len(registered) < 2:
        raise RenderError(f"render.scene: {folder}: structure-from-motion registered only {len(registered)} "
                          f"of {len(names)} photos")
    if len(registered) < len(names):
        missing = ", ".join(n for n in names if n not in by_name)
        print(f"warning: structure-from-motion left out {len(names) - len(registered)} photos: {missing}")
    intrinsics, extrinsics = [], []
    for name in registered:
        image = by_name[name]
        intrinsics.append(rec.cameras[image.camera_id].calibration_matrix())
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()
        extrinsics.append(pose)
    as_tensor = lambda a: torch.tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
    return SfmCameras(registered, as_tensor(intrinsics), as_tensor(extrinsics))
