"""The embedded default dataset: procedural scenes rendered on first use and cached on disk.

Layout (Blender / NeRF-synthetic per scene, plus a scene-level split):

    <root>/scene_0000/transforms_train.json, train/r_0.png ...   every view of the scene
    <root>/split.json        {"train": [scene names], "heldout": [scene names]}
    <root>/manifest.json     the generation parameters; written atomically and LAST
    <root>/.seqrender-embedded   marks the folder as ours (safe to delete and regenerate)

Generation happens in a sibling `.<name>.partial` folder under a file lock and is renamed to
`<root>` only once complete, so a killed generation is simply redone; a manifest whose parameters
differ from the requested ones also triggers regeneration.
"""

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from seqrender.experiments.data.blender import write_scene
from seqrender.experiments.data.renderer import render
from seqrender.experiments.data.scenes import (OrbitConfig, SceneConfig, check_view_step, make_scene,
                                                orbit_cameras, orbit_manifest)
from seqrender.experiments.data.seeding import generator_from

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MARKER = ".seqrender-embedded"
SPLIT_FILE = "split.json"
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class EmbeddedConfig:
    """The registered config of dataset "embedded"; every field but `root` shapes the files."""

    root: str = ""  # dataset folder; "" = default_dataset_dir(config)
    num_scenes: int = 320
    heldout_scenes: int = 32  # the last scenes (by index) are held out
    views_per_scene: int = 16
    resolution: int = 64
    seed: int = 0
    supersample: int = 2  # anti-aliasing: s×s rays per pixel
    # Scene design (data/scenes.py): object count, colouring, and the orbit of the cameras.
    min_primitives: int = 1
    max_primitives: int = 3
    part_colours: bool = False  # every face/part its own colour; False: one colour per primitive
    camera_radius: float = 2.8  # orbit radius (world units; the scene spans about ±1)
    elevations_deg: tuple[float, ...] = (15.0, 35.0)  # cycled over the views
    view_step_deg: float | None = None  # azimuth between neighbouring views; None: 360° / views (full orbit)

    def __post_init__(self) -> None:
        if not 1 <= self.min_primitives <= self.max_primitives:
            raise ValueError(f"need 1 <= min_primitives <= max_primitives, got {self.min_primitives}, "
                             f"{self.max_primitives}")
        if self.camera_radius <= 1.5:
            raise ValueError(f"camera_radius must be > 1.5 (outside the scene), got {self.camera_radius}")
        if not self.elevations_deg or not all(-89 < e < 89 for e in self.elevations_deg):
            raise ValueError(f"elevations_deg must be non-empty, each in (-89, 89); got {self.elevations_deg}")
        for name in ("num_scenes", "views_per_scene", "resolution", "supersample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.heldout_scenes < self.num_scenes:
            raise ValueError(f"heldout_scenes must be in [0, num_scenes), got {self.heldout_scenes} "
                             f"with num_scenes={self.num_scenes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_view_step(self.view_step_deg, self.views_per_scene, "views_per_scene")

    def manifest(self) -> dict:
        """Everything that determines the generated files."""
        config = {k: v for k, v in asdict(self).items() if k != "root" and v is not None}  # unset: as before it existed
        return {"format": FORMAT_VERSION, "config": config, "scene": asdict(self.scene()),
                "orbit": orbit_manifest(self.orbit())}

    def scene(self) -> SceneConfig:
        return SceneConfig(min_primitives=self.min_primitives, max_primitives=self.max_primitives,
                           part_colours=self.part_colours)

    def orbit(self) -> OrbitConfig:
        return OrbitConfig(radius=self.camera_radius, elevations_deg=tuple(self.elevations_deg),
                           azimuth_step_deg=self.view_step_deg)


def default_data_root() -> Path:
    """`$SEQRENDER_DATA`, else `data/` of the source checkout (gitignored), else
    `~/.cache/seqrender/data` for an installed (non-editable) package."""
    if os.environ.get("SEQRENDER_DATA"):
        return Path(os.environ["SEQRENDER_DATA"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "packages").is_dir() and (parent / "experiments").is_dir():
            return parent / "data"
    return Path.home() / ".cache" / "seqrender" / "data"


def default_dataset_dir(config: EmbeddedConfig) -> Path:
    """default_data_root() / a name of the main fields plus a short hash of the scene design, so
    datasets of different designs live side by side."""
    c = config
    design = hashlib.sha1(json.dumps([c.manifest()["scene"], c.manifest()["orbit"]]).encode()).hexdigest()[:6]
    name = (f"embedded-n{c.num_scenes}-h{c.heldout_scenes}-v{c.views_per_scene}-r{c.resolution}"
            f"-a{c.supersample}-s{c.seed}-d{design}")
    return default_data_root() / name


def ensure_embedded_dataset(root: str | Path | None = None, *, progress: bool = True, **fields) -> Path:
    """Return the folder of the embedded dataset `EmbeddedConfig(**fields)`, generating it if
    missing, incomplete or made with other parameters. `root=None` uses `default_dataset_dir`."""
    config = EmbeddedConfig(**fields)
    root = Path(root) if root is not None else default_dataset_dir(config)
    return ensure_generated(root, config.manifest(), lambda folder: _generate(folder, config, progress=progress))


def ensure_generated(root: Path, manifest: dict, generate: Callable[[Path], None]) -> Path:
    """Return `root` if its manifest equals `manifest`; else (re)generate it: under a file lock,
    `generate(folder)` fills a sibling `.partial` folder (marker first, manifest written last),
    which is then renamed to `root`. Shared by every generated dataset."""
    if _is_complete(root, manifest):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root.parent / f".{root.name}.lock"):
        if _is_complete(root, manifest):  # another process finished it while we waited
            return root
        _remove_ours(root)
        partial = root.parent / f".{root.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed run: we hold the lock
        partial.mkdir(parents=True)
        (partial / MARKER).write_text("generated by seqrender.experiments.data\n")
        generate(partial)
        _write_atomic(partial / MANIFEST, manifest)
        partial.rename(root)
    return root


def embedded_scene_dirs(root: str | Path, split: str = "train") -> list[Path]:
    """Scene folders of one split (`"train"` or `"heldout"`) of a generated embedded dataset."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root) / SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run ensure_embedded_dataset first)")
    return [Path(root) / name for name in json.loads(path.read_text())[split]]


def _is_complete(root: Path, manifest: dict) -> bool:
    try:
        return json.loads((root / MANIFEST).read_text()) == json.loads(json.dumps(manifest))
    except (OSError, json.JSONDecodeError):
        return False


def _remove_ours(root: Path) -> None:
    """Delete an outdated or incomplete dataset folder; refuse to touch a folder we did not make."""
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
        return
    if not (root / MARKER).is_file():
        raise ValueError(f"root {root} exists but is not an embedded seqrender dataset (no {MARKER}); "
                         f"refusing to overwrite it: pass an empty or new folder")
    shutil.rmtree(root)


def _generate(folder: Path, config: EmbeddedConfig, *, progress: bool) -> None:
    names = [f"scene_{i:04d}" for i in range(config.num_scenes)]
    with single_thread():
        for i in tqdm(range(config.num_scenes), desc="rendering embedded scenes", unit="scene",
                      disable=not progress):
            _generate_scene(folder / names[i], config, index=i)
    cut = config.num_scenes - config.heldout_scenes
    _write_atomic(folder / SPLIT_FILE, {"train": names[:cut], "heldout": names[cut:]})


def scene_primitives(config: EmbeddedConfig, index: int) -> tuple[list, torch.Generator]:
    """The primitives of scene `index` (0-based over all scenes; held-out ones come last) and the
    generator, positioned to draw that scene's cameras next."""
    generator = generator_from(config.seed, index)
    return make_scene(generator, config.scene()), generator


def _generate_scene(scene_dir: Path, config: EmbeddedConfig, *, index: int) -> None:
    primitives, generator = scene_primitives(config, index)
    size = config.resolution
    intrinsics, extrinsics = orbit_cameras(config.views_per_scene, height=size, width=size, generator=generator,
                                           config=config.orbit())
    out = render(primitives, intrinsics, extrinsics, height=size, width=size, supersample=config.supersample)
    write_scene(scene_dir, torch.cat([out.straight_rgb(), out.alpha[:, None]], dim=1), intrinsics, extrinsics)


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@contextmanager
def single_thread() -> Iterator[None]:
    """Render with one intra-op thread: the ~0.3M-element ops gain little from more, and on a
    shared CPU oversubscribed threads made generation ~7x slower (measured, README)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (released by the OS if the holder dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
