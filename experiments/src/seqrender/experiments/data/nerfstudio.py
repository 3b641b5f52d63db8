"""nerfstudio / DL3DV `transforms.json` (`dataset=nerfstudio`): one folder per scene,

    <root>/<scene>/transforms.json   {"fl_x", "fl_y", "cx", "cy", "w", "h", ..., "frames": [
                                        {"file_path": "images/frame_00001.png", "transform_matrix": 4×4}, ...]}
    <root>/<scene>/images/...        the frames' files, relative to the scene folder

`transform_matrix` is camera-to-world in OpenGL camera axes (x right, y up, z backward), like
Blender's; it becomes an OpenCV world-to-camera matrix. Intrinsics are pixels of a w×h image with
pixel centres at +0.5; any of fl_x, fl_y, cx, cy, w, h may be overridden per frame. Distortion
coefficients are ignored (DL3DV ships undistorted `images_*` folders as well).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from seqrender.experiments.data.scene_dataset import (DataError, Scene, SceneDataset, SceneFormatConfig,
                                                      build_scene_dataset, data_root, pinhole)
from seqrender.posenc.conventions import opengl_c2w_to_opencv_w2c

TRANSFORMS_FILE = "transforms.json"
_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


@dataclass(frozen=True)
class NerfstudioConfig(SceneFormatConfig):
    pass


def nerfstudio_dataset(config: NerfstudioConfig, *, split: str = "train", views: int = 4,
                       seed: int = 0) -> SceneDataset:
    """Builder of dataset "nerfstudio": every folder of `config.root` holding transforms.json."""
    root = data_root(config, f"nerfstudio/DL3DV scenes (<scene>/{TRANSFORMS_FILE})")
    readers = [(d.name, lambda d=d: read_nerfstudio_scene(d / TRANSFORMS_FILE))
               for d in root.iterdir() if (d / TRANSFORMS_FILE).is_file()]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed)


def read_nerfstudio_scene(path: Path) -> Scene:
    """Parse one transforms.json; frames in file order."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: 'frames' must be a non-empty list")
    parsed = [_parse_frame(path, i, meta, frame) for i, frame in enumerate(frames)]
    files, k, c2w = zip(*parsed)
    k = torch.tensor(k, dtype=torch.float64)
    sizes = {(h, w) for w, h in k[:, 4:].tolist()}
    return Scene(path.parent.name, path, list(files), pinhole(*k[:, :4].unbind(-1)),
                 opengl_c2w_to_opencv_w2c(torch.tensor(c2w, dtype=torch.float64)),
                 labels=[f"{i} ({f['file_path']})" for i, f in enumerate(frames)],
                 size=next(iter(sizes)) if len(sizes) == 1 else None)


def _parse_frame(path: Path, index: int, meta: dict, frame: object) -> tuple[Path, list[float], list]:
    """One entry of 'frames' -> (image file, [fx, fy, cx, cy, w, h], 4×4 c2w)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
        raise DataError(f"{path}: frame {index}: needs a string 'file_path'")
    where = f"{path}: frame {index} ({frame['file_path']})"
    values = {key: frame.get(key, meta.get(key)) for key in _INTRINSICS}
    if values["fl_y"] is None:
        values["fl_y"] = values["fl_x"]
    bad = [key for key, v in values.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        raise DataError(f"{where}: intrinsics field {bad[0]!r} must be a finite number, got {values[bad[0]]!r}")
    matrix = frame.get("transform_matrix")
    if not (isinstance(matrix, list) and len(matrix) in (3, 4) and all(
            isinstance(row, list) and len(row) == 4 and all(isinstance(x, (int, float)) for x in row) for row in matrix)):
        raise DataError(f"{where}: 'transform_matrix' must be a 4x4 (or 3x4) list of numbers")
    matrix = [list(map(float, row)) for row in matrix[:3]] + [[0.0, 0.0, 0.0, 1.0]] if len(matrix) == 3 else matrix
    return path.parent / frame["file_path"], [float(values[key]) for key in _INTRINSICS], matrix
