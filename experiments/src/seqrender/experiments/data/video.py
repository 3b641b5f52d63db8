"""Video clips for video pre-training (`dataset=video`): video files or folders of frames,

    <root>/<clip>.{mp4,mkv,avi,mov,webm}   decoded with PyAV; frame times from the stream
    <root>/<clip>/*.{png,jpg}              frames sorted by name; time = index / dataset.fps

Clips have frame times and no poses: every frame gets the identity extrinsics and pinhole
intrinsics from `dataset.fov_x` (principal point at the centre); items carry "times" (V,) in
seconds. Kaleido positions clip frames by θ_t (`positions = "time"`: 2π·frame/frames_per_scene,
SPEC §2) and passes no poses, the video pre-training stage of the curriculum.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

from seqrender.experiments.data.scene_dataset import (DataError, Scene, SceneDataset, SceneFormatConfig,
                                                      build_scene_dataset, data_root, frame_files,
                                                      image_size, probe_image_sizes, read_image_frames)
from seqrender.posenc.conventions import intrinsics_from_fov

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


@dataclass(frozen=True)
class VideoConfig(SceneFormatConfig):
    positions: ClassVar[str] = "time"  # clips: Kaleido positions frames by θ_t, no poses (layouts.py)

    fps: float = 30.0  # frame rate of frame folders (video files carry their own)
    fov_x: float = 1.0472  # assumed horizontal field of view in radians (60°)


def video_dataset(config: VideoConfig, *, split: str = "train", views: int = 4, seed: int = 0) -> SceneDataset:
    """Builder of dataset "video": every video file and every folder of images in `config.root`."""
    root = data_root(config, "video clips (<clip>.mp4 or <clip>/ of frames)")
    if not (config.fps > 0 and 0 < config.fov_x < math.pi):
        raise DataError(f"{root}: dataset.fps must be > 0 and dataset.fov_x in (0, pi), got {config.fps}, {config.fov_x}")
    readers = [(p.stem, lambda p=p: read_video_clip(p, config.fov_x)) for p in root.iterdir()
               if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    readers += [(p.name, lambda p=p: read_frame_folder(p, config.fps, config.fov_x)) for p in root.iterdir()
                if p.is_dir() and frame_files(p)]
    return build_scene_dataset(config, readers, split=split, views=views, seed=seed, read_frames=read_clip_frames,
                               probe_sizes=probe_clip_sizes)


def read_frame_folder(folder: Path, fps: float, fov_x: float) -> Scene:
    files = frame_files(folder)
    return _clip(folder.name, folder, files, torch.arange(len(files), dtype=torch.float64) / fps, fov_x,
                 image_size(files[0], f"{folder}: frame {files[0].name}"))


def read_video_clip(path: Path, fov_x: float) -> Scene:
    """Index a video file by demuxing its packets (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stamps = sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None)
            size = (stream.codec_context.height, stream.codec_context.width)
    except (av.FFmpegError, IndexError, OSError) as err:
        raise DataError(f"{path}: cannot read as a video ({err})") from None
    if not stamps or min(size) <= 0:
        raise DataError(f"{path}: the video has no frames")
    scene = _clip(path.stem, path, [path] * len(stamps), torch.tensor(stamps, dtype=torch.float64), fov_x, size)
    scene.video_indices = list(range(len(stamps)))
    scene.labels = [f"{i} (t={t:.3f}s)" for i, t in enumerate(stamps)]
    return scene


def _clip(name: str, source: Path, files: list[Path], times: torch.Tensor, fov_x: float,
          size: tuple[int, int]) -> Scene:
    k = intrinsics_from_fov(fov_x, width=size[1], height=size[0]).to(torch.float64)
    return Scene(name, source, files, k.expand(len(files), 3, 3).clone(),
                 torch.eye(4, dtype=torch.float64).expand(len(files), 4, 4).clone(), times=times,
                 size=(float(size[0]), float(size[1])))


def read_clip_frames(scene: Scene, frames: Sequence[int]) -> list[np.ndarray]:
    """(H, W, 3) float32 frames of a video file (decoded in order) or of a frame folder."""
    if scene.video_indices is None:
        return read_image_frames(scene, frames)
    import av

    wanted = {scene.video_indices[f] for f in frames}
    decoded = {}
    try:
        with av.open(str(scene.source)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    decoded[i] = frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
                if len(decoded) == len(wanted):
                    break
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{scene.source}: cannot decode the video ({err})") from None
    missing = sorted(wanted - set(decoded))
    if missing:
        raise DataError(f"{scene.source}: frame {missing[0]} could not be decoded (the video ends early)")
    return [decoded[scene.video_indices[f]] for f in frames]


def probe_clip_sizes(scene: Scene) -> list[tuple[int, int]]:
    if scene.video_indices is None:
        return probe_image_sizes(scene)
    return [tuple(int(x) for x in scene.size)] * len(scene)
