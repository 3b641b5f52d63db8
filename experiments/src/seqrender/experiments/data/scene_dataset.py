"""One dataset interface for real-data formats: scenes of frames with intrinsics and OpenCV
world-to-camera extrinsics, or clips of frames with frame times.

A format module (llff.py, colmap.py, realestate.py, co3d.py, nerfstudio.py, video.py) only turns
its files into `Scene` records (annotations parsed and converted ONCE to the project convention,
SPEC §4; no pixels read). Everything else is shared here: the scene-level train/held-out split,
the evenly spaced frame subset, validation (finite, orthonormal poses; every frame present, readable
and of one size), `on_error` ("raise": the first problem is a `DataError`; "skip": bad scenes are
counted, reported in one line and left out), image reading and resize + centre-crop to the
training resolution with the intrinsics updated.

Every problem is a `DataError` whose message is one line naming the file and the problem.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from seqrender.experiments.data.cameras import scale_intrinsics
from seqrender.experiments.data.seeding import generator_from

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp")


class DataError(ValueError):
    """Bad data on disk; the message is one line: `<file>: <problem>`."""


@dataclass(frozen=True)
class SceneFormatConfig:
    """Fields every real-data format shares (`dataset.<field>=...`)."""

    root: str = ""  # the folder the format's layout starts from (README "Your own data")
    scenes: tuple[str, ...] = ()  # scene names to use; () = every scene found under root
    heldout_scenes: int = 1  # the last N scenes (sorted by name) form split "heldout"
    frames_per_scene: int = 8  # evenly spaced frames kept per scene (scenes with fewer are bad data)
    resolution: int = 64  # square training size: resize the shorter side, centre-crop the longer
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGBA images are composited onto it
    on_error: Literal["raise", "skip"] = "raise"  # skip: leave bad scenes out, count and report them


@dataclass
class Scene:
    """One scene or clip, annotations only. V frames; `intrinsics` in pixels of the native image."""

    name: str
    source: Path  # the annotation file (or video) that errors name
    frames: list[Path]  # (V,) image files; for a video file: the video, V times
    intrinsics: Tensor  # (V, 3, 3) float64, pixels of the native image grid
    extrinsics: Tensor  # (V, 4, 4) float64, OpenCV world-to-camera (identity for posed-less clips)
    times: Tensor | None = None  # (V,) float64 seconds, clips only
    labels: list[str] | None = None  # (V,) how errors name each frame; default: its file
    video_indices: list[int] | None = None  # (V,) frame numbers inside a video file
    size: tuple[float, float] | None = None  # (H, W) the intrinsics refer to; None: the images' own

    def __len__(self) -> int:
        return len(self.frames)

    def label(self, i: int) -> str:
        return self.labels[i] if self.labels else str(self.frames[i])

    def subset(self, keep: Sequence[int]) -> "Scene":
        keep = list(keep)
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
        return Scene(self.name, self.source, pick(self.frames), self.intrinsics[keep], self.extrinsics[keep],
                     None if self.times is None else self.times[keep], pick(self.labels), pick(self.video_indices),
                     self.size)


SceneReader = Callable[[], Scene]
FrameReader = Callable[[Scene, Sequence[int]], list[np.ndarray]]


class SceneDataset(Dataset):
    """Items are dicts like `MultiViewDataset`'s:

    - "images": (V, 3, H, W) float32 in [0, 1], H = W = resolution
    - "intrinsics": (V, 3, 3) float32, pixels of the (H, W) grid
    - "extrinsics": (V, 4, 4) float32, OpenCV world-to-camera
    - "frames": (V,) int64 frame indices within the scene's kept frames
    - "times": (V,) float32 seconds (clips only)
    - "scene": str; "index": int
    """

    def __init__(self, scenes: list[Scene], *, views: int, resolution: int, background: Sequence[float],
                 seed: int = 0, read_frames: FrameReader | None = None, skipped: list[str] | None = None):
        self.cameras = scenes
        self.names = [s.name for s in scenes]
        self.views, self.resolution, self.seed = views, resolution, seed
        self.background = np.asarray(background, dtype=np.float32)
        self.read_frames = read_frames or read_image_frames
        self.skipped = skipped or []

    def __len__(self) -> int:
        return len(self.cameras)

    def __getitem__(self, index: int) -> dict:
        return self.get_item(index)

    def get_item(self, index: int, *, generator: torch.Generator | None = None,
                 frames: Sequence[int] | None = None) -> dict:
        """Views of scene `index`: the given `frames`, else `views` frames drawn by `generator`
        (default `generator_from(seed, index)`)."""
        scene = self.cameras[index]
        if frames is None:
            generator = generator if generator is not None else generator_from(self.seed, index)
            frames = torch.randperm(len(scene), generator=generator)[: self.views].tolist()
        frames = [int(f) for f in frames]
        rgb = [composite(image, self.background) for image in self.read_frames(scene, frames)]
        check_sizes(scene, frames, [image.shape[:2] for image in rgb])
        images = torch.from_numpy(np.ascontiguousarray(np.stack(rgb).transpose(0, 3, 1, 2)))
        intrinsics = scene.intrinsics[frames]
        if scene.size is not None:  # intrinsics given for another image size (e.g. normalised)
            height, width = images.shape[-2:]
            intrinsics = scale_intrinsics(intrinsics, scale_x=width / scene.size[1], scale_y=height / scene.size[0])
        images, intrinsics = resize_crop(images, intrinsics.float(), self.resolution)
        item = {"images": images, "intrinsics": intrinsics, "extrinsics": scene.extrinsics[frames].float(),
                "frames": torch.tensor(frames, dtype=torch.int64), "scene": scene.name, "index": index}
        if scene.times is not None:
            item["times"] = scene.times[frames].float()
        return item


def build_scene_dataset(config: SceneFormatConfig, readers: Sequence[tuple[str, SceneReader]], *, split: str,
                        views: int, seed: int, read_frames: FrameReader | None = None,
                        probe_sizes: Callable[[Scene], list[tuple[int, int]]] | None = None) -> SceneDataset:
    """The `split` ("train" / "heldout") of the scenes `readers` name: (name, reader) pairs sorted
    by name, the last `config.heldout_scenes` held out. Each scene is read, cut to
    `frames_per_scene` evenly spaced frames and validated; with on_error="skip" bad scenes are
    left out and reported in one line on stderr."""
    readers = select_scenes(config, readers)
    cut = len(readers) - config.heldout_scenes
    chosen = {"train": readers[:cut], "heldout": readers[cut:]}.get(split)
    if chosen is None:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    scenes, skipped = [], []
    for name, reader in chosen:
        try:
            scenes.append(checked_scene(reader(), config, probe_sizes or probe_image_sizes))
        except DataError as err:
            if config.on_error != "skip":
                raise
            skipped.append(str(err))
    if skipped:
        print(f"warning: dataset split {split!r}: skipped {len(skipped)} of {len(chosen)} scenes "
              f"(dataset.on_error=skip); first: {skipped[0]}", file=sys.stderr)
    if not scenes:
        raise DataError(f"{config.root}: no usable scene in split {split!r}" + (
            f" ({len(skipped)} skipped; first: {skipped[0]})" if skipped else ""))
    return SceneDataset(scenes, views=views, resolution=config.resolution, background=config.background,
                        seed=seed, read_frames=read_frames, skipped=skipped)


def select_scenes(config: SceneFormatConfig, readers: Sequence[tuple[str, SceneReader]]) -> list[tuple[str, SceneReader]]:
    """`config.scenes` (all if empty) sorted by name; checks there is a scene left to hold out."""
    readers = sorted(readers, key=lambda pair: pair[0])
    if config.scenes:
        known = {name for name, _ in readers}
        missing = [s for s in config.scenes if s not in known]
        if missing:
            raise DataError(f"{config.root}: dataset.scenes names {missing[0]!r}, which is not there "
                            f"(found: {', '.join(sorted(known)) or 'none'})")
        readers = [pair for pair in readers if pair[0] in set(config.scenes)]
    if config.heldout_scenes < 1 or len(readers) <= config.heldout_scenes:
        raise DataError(f"{config.root}: found {len(readers)} scene(s); need more than dataset.heldout_scenes="
                        f"{config.heldout_scenes} (>= 1) to train and hold out scenes")
    return readers


def data_root(config: SceneFormatConfig, what: str) -> Path:
    """`config.root` as a folder, or a DataError naming `what` it should hold."""
    root = Path(config.root)
    if not config.root or not root.is_dir():
        raise DataError(f"{config.root or '(empty)'}: dataset.root must be a folder of {what}")
    return root


def checked_scene(scene: Scene, config: SceneFormatConfig,
                  probe_sizes: Callable[[Scene], list[tuple[int, int]]]) -> Scene:
    """`frames_per_scene` evenly spaced frames of `scene`, after checking poses, files and sizes."""
    if len(scene) < config.frames_per_scene:
        raise DataError(f"{scene.source}: scene {scene.name!r} has {len(scene)} frames, fewer than "
                        f"dataset.frames_per_scene={config.frames_per_scene}")
    keep = np.round(np.linspace(0, len(scene) - 1, config.frames_per_scene)).astype(int).tolist()
    scene = scene.subset(keep)
    check_poses(scene)
    check_sizes(scene, range(len(scene)), probe_sizes(scene))
    return scene


def check_poses(scene: Scene, *, tolerance: float = 1e-3) -> None:
    """Every extrinsic and intrinsic finite; rotations orthonormal with det +1; last row [0, 0, 0, 1]."""
    for i in range(len(scene)):
        w2c, k = scene.extrinsics[i], scene.intrinsics[i]
        if not (torch.isfinite(w2c).all() and torch.isfinite(k).all()):
            raise DataError(f"{scene.source}: frame {scene.label(i)}: pose or intrinsics not finite (NaN or inf)")
        rotation = w2c[:3, :3].double()
        error = (rotation.T @ rotation - torch.eye(3, dtype=torch.float64)).abs().max().item()
        if error > tolerance or torch.linalg.det(rotation) < 0 or not torch.allclose(
                w2c[3].double(), torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)):
            raise DataError(f"{scene.source}: frame {scene.label(i)}: rotation is not orthonormal with det +1 "
                            f"(max |RᵀR − I| = {error:.3g})")
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise DataError(f"{scene.source}: frame {scene.label(i)}: focal lengths must be positive, "
                            f"got fx={k[0, 0].item():g}, fy={k[1, 1].item():g}")


def check_sizes(scene: Scene, frames: Sequence[int], sizes: Sequence[tuple[int, int]]) -> None:
    """All frames of a scene must share one (H, W)."""
    frames = list(frames)
    for f, size in zip(frames, sizes):
        if tuple(size) != tuple(sizes[0]):
            raise DataError(f"{scene.source}: frame {scene.label(f)}: image size {tuple(size)} (H, W) differs "
                            f"from frame {scene.label(frames[0])}'s {tuple(sizes[0])}")


def probe_image_sizes(scene: Scene) -> list[tuple[int, int]]:
    """(H, W) of every frame from its header; a missing or unreadable file is a DataError."""
    return [image_size(path, f"{scene.source}: frame {scene.label(i)}") for i, path in enumerate(scene.frames)]


def image_size(path: Path, where: str) -> tuple[int, int]:
    with open_image(path, where) as image:
        return image.height, image.width


class ImageNotFoundError(DataError, FileNotFoundError):
    """An image file the annotations name is not there."""


def open_image(path: Path, where: str) -> Image.Image:
    """PIL image of `path`; a missing or unreadable file is a DataError starting with `where`."""
    if not path.is_file():
        raise ImageNotFoundError(f"{where}: image {path} not found")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{where}: cannot read image {path} ({err})") from None


def read_rgba(path: Path, where: str) -> np.ndarray:
    """(H, W, 4) float32 straight-alpha RGBA in [0, 1] of the image at `path` (the one image
    decoder of the data package: real-data formats, Blender scenes, the embedded dataset). 16-bit
    greyscale is scaled by 1/65535 (PIL's convert("RGBA") would clip it to 0/255)."""
    with open_image(path, where) as image:
        try:
            return rgba_array(image, where=f"{where}: image {path}")
        except OSError as err:
            raise DataError(f"{where}: cannot decode image {path} ({err})") from None


_SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I"}  # how Pillow opens 16-bit greyscale PNGs


def rgba_array(image: Image.Image, *, where: str) -> np.ndarray:
    """A PIL image -> (H, W, 4) float32 straight-alpha RGBA in [0, 1]; 16-bit colour PNGs open as 8-bit."""
    if image.mode in _SIXTEEN_BIT_GREY:
        grey = np.asarray(image, dtype=np.float64)
        if grey.min() < 0 or grey.max() > 65535:
            raise DataError(f"{where}: {image.mode} pixel values outside 0..65535 are not supported")
        grey = (grey / 65535.0).astype(np.float32)
        return np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
    if image.mode == "F" or image.mode.startswith(("I;32", "BGR")):
        raise DataError(f"{where}: unsupported image mode {image.mode!r} (use 8-bit or 16-bit PNG/JPEG)")
    return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0


def read_image_frames(scene: Scene, frames: Sequence[int]) -> list[np.ndarray]:
    """(H, W, 4) float32 straight-alpha RGBA in [0, 1] of each frame."""
    return [read_rgba(scene.frames[f], f"{scene.source}: frame {scene.label(f)}") for f in frames]


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W, 4) straight alpha (or (H, W, 3)) -> (H, W, 3) over `background`."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def resize_crop(images: Tensor, intrinsics: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Resize so the shorter side is `size` (antialiased), then centre-crop to size × size.

    images: (V, 3, H, W); intrinsics: (V, 3, 3) for (H, W) with pixel centres at +0.5 ->
    (V, 3, size, size) and the intrinsics of that grid (scaled, principal point shifted by the crop).
    """
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        images = torch.nn.functional.interpolate(images, size=(new_h, new_w), mode="bilinear", antialias=True,
                                                 align_corners=False).clamp(0.0, 1.0)
        intrinsics = scale_intrinsics(intrinsics, scale_x=new_w / width, scale_y=new_h / height)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    shift = torch.zeros_like(intrinsics)
    shift[..., 0, 2], shift[..., 1, 2] = left, top
    return images[..., top:top + size, left:left + size].contiguous(), intrinsics - shift


def frame_files(folder: Path) -> list[Path]:
    """Image files of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def rigid(rotation: Tensor, translation: Tensor) -> Tensor:
    """(..., 3, 3), (..., 3) -> (..., 4, 4) [[R, t], [0, 1]] (float64)."""
    out = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=torch.float64)
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = rotation, translation, 1.0
    return out


def pinhole(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """(V,) each -> (V, 3, 3) float64 pixel intrinsics."""
    k = torch.zeros(fx.shape[0], 3, 3, dtype=torch.float64)
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = fx, fy, cx, cy, 1.0
    return k
