"""CO3D (`dataset=co3d`): per category a gzipped JSON list of frame annotations,

    <root>/<category>/frame_annotations.jgz      [{"sequence_name", "frame_number", "frame_timestamp",
                                                   "image": {"path", "size": [H, W]},
                                                   "viewpoint": {"R", "T", "focal_length", "principal_point",
                                                                 "intrinsics_format"}}, ...]
    <root>/<image.path>                          e.g. <category>/<sequence>/images/frame000001.jpg

A scene is one sequence (named `<category>/<sequence>`), frames sorted by frame_number.
Cameras are PyTorch3D's: row-vector world-to-view `X_cam = X_world R + T` with view axes
(+x left, +y up, +z forward), and NDC intrinsics. To OpenCV: R_cv = diag(−1, −1, 1) Rᵀ,
t_cv = diag(−1, −1, 1) T. NDC → pixels with half = (W/2, H/2) and s = min(half)
("ndc_isotropic") or s = half ("ndc_norm_image_bounds"): f_px = f·s, c_px = half − p·s.
"""

import gzip
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from seqrender.experiments.data.scene_dataset import (DataError, Scene, SceneDataset, SceneFormatConfig,
                                                      build_scene_dataset, data_root, pinhole, rigid)

ANNOTATIONS_FILE = "frame_annotations.jgz"
_FLIP_XY = torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)


@dataclass(frozen=True)
class CO3DConfig(SceneFormatConfig):
    categories: tuple[str, ...] = ()  # category folders to use; () = every folder with annotations


def co3d_dataset(config: CO3DConfig, *, split: str = "train", views: int = 4, seed: int = 0) -> SceneDataset:
    """Builder of dataset "co3d": every sequence of every category's frame_annotations.jgz."""
    root = data_root(config, f"CO3D categories (<category>/{ANNOTATIONS_FILE})")
    files = sorted(d / ANNOTATIONS_FILE for d in root.iterdir() if (d / ANNOTATIONS_FILE).is_file()
                   and (not config.categories or d.name in config.categories))
    readers = []
    for path in files:
        try:
            sequences = read_co3d_annotations(path, root)
        except DataError as err:  # the whole file is unusable: one bad "scene" for on_error=skip
            if config.on_error != "skip":
                raise
            readers.append((f"{path.parent.name}/*", lambda err=err: _raise(err)))
            continue
        readers += [(name, lambda scene=scene: scene) for name, scene in sequences.items()]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed)


def _raise(err: DataError) -> Scene:
    raise err


@lru_cache(maxsize=8)
def read_co3d_annotations(path: Path, root: Path) -> dict[str, Scene]:
    """Every sequence of one category's annotation file -> {"<category>/<sequence>": Scene}."""
    try:
        with gzip.open(path, "rt") as f:
            entries = json.load(f)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a gzipped JSON file ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty JSON list of frame annotations")
    sequences = defaultdict(list)
    for i, entry in enumerate(entries):
        frame = _parse_entry(path, i, entry)
        sequences[frame["sequence"]].append(frame)
    return {f"{path.parent.name}/{name}": _scene(path, root, f"{path.parent.name}/{name}", frames)
            for name, frames in sequences.items()}


def _parse_entry(path: Path, index: int, entry: object) -> dict:
    """One frame annotation -> {"sequence", "number", "time", "file", "size", "R", "T", "f", "p", "format"}."""
    where = f"{path}: annotation {index}"
    try:
        view, image = entry["viewpoint"], entry["image"]
        frame = {"sequence": str(entry["sequence_name"]), "number": int(entry["frame_number"]),
                 "time": float(entry.get("frame_timestamp", math.nan)), "file": str(image["path"]),
                 "size": [float(x) for x in image["size"]], "R": [[float(x) for x in row] for row in view["R"]],
                 "T": [float(x) for x in view["T"]], "f": [float(x) for x in view["focal_length"]],
                 "p": [float(x) for x in view["principal_point"]],
                 "format": view.get("intrinsics_format", "ndc_norm_image_bounds")}
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: malformed frame annotation ({type(err).__name__}: {err})") from None
    shapes = {"size": 2, "T": 3, "f": 2, "p": 2}
    bad = [k for k, n in shapes.items() if len(frame[k]) != n] + (
        ["R"] if len(frame["R"]) != 3 or any(len(row) != 3 for row in frame["R"]) else [])
    if bad:
        raise DataError(f"{where}: malformed frame annotation (field {bad[0]!r} has the wrong length)")
    if frame["format"] not in ("ndc_isotropic", "ndc_norm_image_bounds"):
        raise DataError(f"{where}: unknown intrinsics_format {frame['format']!r} "
                        "(allowed: ndc_isotropic, ndc_norm_image_bounds)")
    return frame


def _scene(path: Path, root: Path, name: str, frames: list[dict]) -> Scene:
    frames = sorted(frames, key=lambda f: f["number"])
    get = lambda key: torch.tensor([f[key] for f in frames], dtype=torch.float64)  # noqa: E731
    rotation, translation = pytorch3d_to_opencv_w2c(get("R"), get("T"))
    intrinsics = ndc_to_pixel_intrinsics(get("f"), get("p"), get("size"),
                                         isotropic=torch.tensor([f["format"] == "ndc_isotropic" for f in frames]))
    times = get("time")
    sizes = {tuple(f["size"]) for f in frames}
    return Scene(name, path, [root / f["file"] for f in frames], intrinsics, rigid(rotation, translation),
                 times=times if torch.isfinite(times).all() else None,
                 labels=[f"{f['number']} ({f['file']})" for f in frames],
                 size=next(iter(sizes)) if len(sizes) == 1 else None)


def pytorch3d_to_opencv_w2c(rotation, translation):
    """PyTorch3D (V, 3, 3) R and (V, 3) T (x_cam = x_world R + T, +x left, +y up) -> OpenCV
    world-to-camera rotation (V, 3, 3) and translation (V, 3)."""
    return _FLIP_XY[:, None] * rotation.transpose(-1, -2), _FLIP_XY * translation


def ndc_to_pixel_intrinsics(focal, principal, size_hw, *, isotropic):
    """CO3D NDC focal (V, 2), principal point (V, 2), image size (V, 2) as (H, W), isotropic (V,)
    bool -> (V, 3, 3) pixel intrinsics (pixel centres at +0.5)."""
    half = size_hw.flip(-1) / 2  # (W/2, H/2)
    scale = torch.where(isotropic[:, None], half.min(-1, keepdim=True).values.expand_as(half), half)
    f_px, c_px = focal * scale, half - principal * scale
    return pinhole(f_px[:, 0], f_px[:, 1], c_px[:, 0], c_px[:, 1])
