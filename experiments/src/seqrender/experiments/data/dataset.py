"""A torch Dataset of multi-view items over scenes stored in the Blender / NeRF-synthetic layout.

Item `index` is scene `index`; its views are drawn without replacement by a generator, by default
`generator_from(seed, index)`, so an item is a pure function of (seed, index). A training loop that
wants a fresh draw per step passes its own generator, e.g. `generator_from(seed, step, sample)`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from seqrender.experiments.data.blender import BlenderCameras, load_views, read_cameras
from seqrender.experiments.data.embedded import EmbeddedConfig, embedded_scene_dirs, ensure_embedded_dataset
from seqrender.experiments.data.seeding import generator_from


class MultiViewDataset(Dataset):
    """Items are dicts:

    - "images": (V, 3, H, W) float32 in [0, 1], RGBA composited onto `background`
    - "intrinsics": (V, 3, 3) float32, pixel units of the (H, W) grid
    - "extrinsics": (V, 4, 4) float32, OpenCV world-to-camera
    - "frames": (V,) int64 frame indices within the scene's transforms file
    - "scene": str, the scene folder's name; "index": int, the item index
    """

    def __init__(self, scene_dirs: Sequence[str | Path], *, views: int = 4, split: str = "train",
                 resolution: int | tuple[int, int] | None = None,
                 background: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0):
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        if not scene_dirs:
            raise ValueError("scene_dirs must name at least one scene folder")
        self.cameras: list[BlenderCameras] = [read_cameras(d, split=split) for d in scene_dirs]
        for cams in self.cameras:
            if len(cams) < views:
                raise ValueError(f"{cams.transforms_path}: has {len(cams)} frames, fewer than views={views}")
        self.names = [Path(d).name for d in scene_dirs]
        self.views, self.resolution, self.background, self.seed = views, resolution, tuple(background), seed

    def __len__(self) -> int:
        return len(self.cameras)

    def __getitem__(self, index: int) -> dict:
        return self.get_item(index)

    def get_item(self, index: int, *, generator: torch.Generator | None = None,
                 frames: Sequence[int] | None = None) -> dict:
        """Views of scene `index`: the given `frames`, else `views` frames drawn by `generator`
        (default `generator_from(seed, index)`), in the drawn order."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scenes")
        cameras = self.cameras[index]
        if frames is None:
            generator = generator if generator is not None else generator_from(self.seed, index)
            frames = torch.randperm(len(cameras), generator=generator)[: self.views].tolist()
        views = load_views(cameras, frames, resolution=self.resolution, background=self.background)
        return {"images": views.images, "intrinsics": views.intrinsics, "extrinsics": views.extrinsics,
                "frames": torch.tensor(list(frames), dtype=torch.int64), "scene": self.names[index],
                "index": index}


def embedded_dataset(config: EmbeddedConfig = EmbeddedConfig(), *, split: str = "train", views: int = 4,
                     seed: int = 0, progress: bool = True) -> MultiViewDataset:
    """Builder of dataset "embedded": the `split` ("train" or "heldout" scenes) of the embedded
    dataset, generated first if needed. `seed` drives view sampling, `config.seed` the scenes."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k != "root"}
    folder = ensure_embedded_dataset(config.root or None, progress=progress, **fields)
    return MultiViewDataset(embedded_scene_dirs(folder, split), views=views, seed=seed)


@dataclass(frozen=True)
class BlenderConfig:
    """The registered config of dataset "blender": real data in the Blender / NeRF-synthetic layout,
    e.g. nerf_synthetic/ with one folder per scene."""

    root: str = ""  # folder holding the scene folders
    scenes: tuple[str, ...] = ()  # scene folder names; () = every folder with the train transforms
    train_split: str = "train"  # transforms_<train_split>.json serves split "train"
    heldout_split: str = "test"  # transforms_<heldout_split>.json serves split "heldout"
    resolution: int = 64
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


def blender_dataset(config: BlenderConfig, *, split: str = "train", views: int = 4, seed: int = 0) -> MultiViewDataset:
    """Builder of dataset "blender": every scene of `config.root`, views from the transforms file
    that serves `split` ("train" or "heldout")."""
    splits = {"train": config.train_split, "heldout": config.heldout_split}
    if split not in splits:
        raise ValueError(f"split must be one of {tuple(splits)}, got {split!r}")
    root = Path(config.root)
    if not config.root or not root.is_dir():
        raise ValueError(f"dataset.root must name a folder of Blender-format scenes, got {config.root!r}")
    names = config.scenes or sorted(d.name for d in root.iterdir()
                                    if (d / f"transforms_{config.train_split}.json").is_file())
    return MultiViewDataset([root / n for n in names], views=views, split=splits[split],
                            resolution=config.resolution, background=config.background, seed=seed)
