"""RealEstate10K (`dataset=realestate10k`): one camera file per clip plus its extracted frames,

    <root>/<clip>.txt                  line 1: the video URL; then one line per frame:
                                       timestamp_us fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2
    <root>/<clip>/<timestamp_us>.{png,jpg}   the frame of each line

Intrinsics are normalised by the image width (fx, cx) and height (fy, cy); the 3×4 pose is already
an OpenCV world-to-camera matrix. Frame times are the timestamps in seconds.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqrender.experiments.data.scene_dataset import (IMAGE_SUFFIXES, DataError, Scene, SceneDataset,
                                                      SceneFormatConfig, build_scene_dataset, data_root, pinhole,
                                                      rigid)


@dataclass(frozen=True)
class RealEstate10KConfig(SceneFormatConfig):
    pass


def realestate10k_dataset(config: RealEstate10KConfig, *, split: str = "train", views: int = 4,
                          seed: int = 0) -> SceneDataset:
    """Builder of dataset "realestate10k": every `<clip>.txt` of `config.root` with a `<clip>/` folder."""
    root = data_root(config, "RealEstate10K clips (<clip>.txt + <clip>/<timestamp>.png)")
    readers = [(p.stem, lambda p=p: read_realestate_clip(p)) for p in root.glob("*.txt") if (root / p.stem).is_dir()]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed)


def read_realestate_clip(path: Path) -> Scene:
    """Parse one clip's camera file; frames are `<clip>/<timestamp>.<image suffix>`."""
    lines = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    rows = []
    for number, fields in enumerate(lines, start=2):
        try:
            if len(fields) != 19:
                raise ValueError(f"expected 19 numbers, got {len(fields)}")
            rows.append([float(x) for x in fields])
        except ValueError as err:
            raise DataError(f"{path}: line {number}: malformed camera line ({err})") from None
    if not rows:
        raise DataError(f"{path}: no camera lines after the URL line")
    table = torch.tensor(np.array(rows), dtype=torch.float64)
    stamps = [f[0] for f in lines]
    w2c = table[:, 7:].reshape(-1, 3, 4)
    return Scene(path.stem, path, [_frame_file(path.with_suffix(""), s) for s in stamps],
                 pinhole(*table[:, 1:5].unbind(-1)), rigid(w2c[:, :, :3], w2c[:, :, 3]),
                 times=table[:, 0] / 1e6, labels=[f"{s} (line {n})" for n, s in enumerate(stamps, start=2)],
                 size=(1.0, 1.0))


def _frame_file(folder: Path, stamp: str) -> Path:
    """The image of timestamp `stamp` (any image suffix; .png if none is there)."""
    found = [folder / f"{stamp}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stamp}{suffix}").is_file()]
    return found[0] if found else folder / f"{stamp}.png"
