"""The embedded 4-D dataset (registered as "embedded4d"): the procedural scenes of `scenes.py` with
every primitive moving along a straight line, rendered on a V × T grid (V orbit cameras, fixed over
time, × T time steps) and cached on disk with the embedded dataset's atomic-manifest mechanism
(`embedded.ensure_generated`).

Layout: `<root>/train.safetensors`, `<root>/heldout.safetensors` (images uint8 (S, V, T, 3, H, W)
composited on white, intrinsics (S, V, 3, 3), extrinsics (S, V, 4, 4) OpenCV world-to-camera),
`manifest.json` written last.
"""

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from seqrender.experiments.data.embedded import SPLITS, default_data_root, ensure_generated, single_thread
from seqrender.experiments.data.primitives import Primitive
from seqrender.experiments.data.renderer import render
from seqrender.experiments.data.scenes import (OrbitConfig, SceneConfig, check_view_step, make_scene,
                                                orbit_cameras, orbit_manifest)
from seqrender.experiments.data.seeding import generator_from

FORMAT_VERSION = 1
BACKGROUND = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class GridScenes:
    """S scenes on a V × T grid, in memory. images (S, V, T, 3, H, W) in [0, 1] (row v: the video
    of view v; column t: the freeze-time views at time t); intrinsics (S, V, 3, 3) pixels;
    extrinsics (S, V, 4, 4) world-to-camera (OpenCV), the same at every time."""

    images: Tensor
    intrinsics: Tensor
    extrinsics: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class Embedded4DConfig:
    """The registered config of dataset "embedded4d"; every field but `root` shapes the files."""

    layout: ClassVar[str] = "grid"  # what models it fits (seqrender.experiments.layouts)

    root: str = ""  # dataset folder; "" = default_data_root() / a name made of the fields
    num_scenes: int = 200
    heldout_scenes: int = 16  # the last scenes (by index) are held out
    views: int = 4  # V orbit cameras
    times: int = 4  # T time steps
    resolution: int = 32
    seed: int = 0
    supersample: int = 2  # anti-aliasing: s×s rays per pixel
    speed: float = 0.15  # largest displacement of a primitive per time step (world units)
    view_step_deg: float | None = None  # azimuth between neighbouring views; None: 360° / views (full orbit)
    motion: Literal["free", "vertical"] = "free"  # primitives' directions: any in 3-D, or up/down (world z)
    # Scene design (data/scenes.py SceneConfig; recorded in the manifest's "scene" entry)
    min_primitives: int = 2
    max_primitives: int = 4
    part_colours: bool = True  # every face/part its own colour; False: one colour per primitive

    def __post_init__(self) -> None:
        for name in ("num_scenes", "views", "times", "resolution", "supersample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.heldout_scenes < self.num_scenes:
            raise ValueError(f"heldout_scenes must be in [0, num_scenes), got {self.heldout_scenes} "
                             f"with num_scenes={self.num_scenes}")
        check_view_step(self.view_step_deg, self.views)
        if not 1 <= self.min_primitives <= self.max_primitives:
            raise ValueError(f"need 1 <= min_primitives <= max_primitives, got {self.min_primitives}, "
                             f"{self.max_primitives}")
        if self.motion not in ("free", "vertical"):
            raise ValueError(f"motion must be 'free' or 'vertical', got {self.motion!r}")
        if self.seed < 0 or self.speed < 0:
            raise ValueError(f"seed and speed must be >= 0, got seed={self.seed}, speed={self.speed}")

    def manifest(self) -> dict:
        """Everything that determines the generated files."""
        scene = self.scene()   # its fields are recorded once, under "scene"; None: unset
        unset = {"view_step_deg": None, "motion": "free"}   # left out at their defaults, as before they existed
        config = {k: v for k, v in asdict(self).items()
                  if k != "root" and not hasattr(scene, k) and not (k in unset and v == unset[k])}
        return {"format": FORMAT_VERSION, "kind": "embedded4d", "config": config, "scene": asdict(scene),
                "orbit": orbit_manifest(self.orbit())}

    def scene(self) -> SceneConfig:
        return SceneConfig(min_primitives=self.min_primitives, max_primitives=self.max_primitives,
                           part_colours=self.part_colours)

    def orbit(self) -> OrbitConfig:
        """The cameras' orbit: the default one, or an arc of views `view_step_deg` apart."""
        return OrbitConfig(azimuth_step_deg=self.view_step_deg)

    def folder(self) -> Path:
        c = self
        return Path(c.root) if c.root else default_data_root() / (
            f"embedded4d-n{c.num_scenes}-h{c.heldout_scenes}-v{c.views}-t{c.times}-r{c.resolution}"
            f"-a{c.supersample}-m{c.speed:g}-s{c.seed}" + ("" if c.view_step_deg is None else f"-d{c.view_step_deg:g}")
            + ("" if c.motion == "free" else f"-{c.motion}")
            + ("" if c.scene() == SceneConfig() else f"-p{c.min_primitives}{c.max_primitives}{'c' if c.part_colours else 'u'}"))


def moved(primitives: Sequence[Primitive], velocities: Tensor, time: int) -> list[Primitive]:
    """The primitives at time step `time`: centre + time · velocity; velocities (P, 3)."""
    return [dataclasses.replace(p, centre=p.centre + time * v) for p, v in zip(primitives, velocities)]


@dataclass
class GridScene:
    """Everything that makes scene `index` of a 4-D dataset: primitives at time 0, velocities (P, 3),
    the grid's cameras intrinsics (V, 3, 3), extrinsics (V, 4, 4) world-to-camera."""

    primitives: list[Primitive]
    velocities: Tensor
    intrinsics: Tensor
    extrinsics: Tensor

    def at(self, time: int) -> list[Primitive]:
        return moved(self.primitives, self.velocities, time)


def grid_scene(config: Embedded4DConfig, index: int) -> GridScene:
    """The procedural scene `index` of `config` (a pure function of (config.seed, index))."""
    generator = generator_from(config.seed, index)
    primitives = make_scene(generator, config.scene())
    size = config.resolution
    intrinsics, extrinsics = orbit_cameras(config.views, height=size, width=size, generator=generator,
                                           config=config.orbit())
    directions = torch.nn.functional.normalize(torch.randn(len(primitives), 3, generator=generator), dim=-1)
    if config.motion == "vertical":   # the same draw, kept to its up/down sign: (0, 0, ±1)
        directions = torch.nn.functional.pad(directions[:, 2:].sign(), (2, 0))
    velocities = directions * config.speed * (0.5 + 0.5 * torch.rand(len(primitives), 1, generator=generator))
    return GridScene(primitives, velocities, intrinsics, extrinsics)


def render_grid(config: Embedded4DConfig, index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Scene `index`: images (V, T, 3, H, W) in [0, 1], intrinsics (V, 3, 3), extrinsics (V, 4, 4)."""
    scene, size = grid_scene(config, index), config.resolution
    frames = [render(scene.at(t), scene.intrinsics, scene.extrinsics, height=size, width=size,
                     supersample=config.supersample).composite(BACKGROUND) for t in range(config.times)]
    return torch.stack(frames, dim=1).clamp(0, 1), scene.intrinsics, scene.extrinsics


def _generate(folder: Path, config: Embedded4DConfig, *, progress: bool) -> None:
    scenes = []
    with single_thread():
        for i in tqdm(range(config.num_scenes), desc="rendering embedded 4D scenes", unit="scene",
                      disable=not progress):
            scenes.append(render_grid(config, i))
    images, intrinsics, extrinsics = (torch.stack(parts) for parts in zip(*scenes))
    cut = config.num_scenes - config.heldout_scenes
    for split, part in zip(SPLITS, (slice(0, cut), slice(cut, None))):
        tensors = {"images": (images[part] * 255).round().to(torch.uint8).contiguous(),
                   "intrinsics": intrinsics[part].contiguous(), "extrinsics": extrinsics[part].contiguous()}
        save_file(tensors, str(folder / f"{split}.safetensors"))


def embedded4d_dataset(config: Embedded4DConfig = Embedded4DConfig(), *, split: str = "train",
                       progress: bool = True) -> GridScenes:
    """Builder of dataset "embedded4d": the `split` ("train" or "heldout") scenes, generated first
    if needed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = ensure_generated(config.folder(), config.manifest(),
                              lambda partial: _generate(partial, config, progress=progress))
    tensors = load_file(str(folder / f"{split}.safetensors"))
    return GridScenes(images=tensors["images"].float() / 255, intrinsics=tensors["intrinsics"],
                      extrinsics=tensors["extrinsics"])
