"""The embedded moving scenes as video clips (registered as "embedded_video"): the video data of the
curriculum's pre-training stage (issue 12 §6).

The scenes are `embedded4d`'s (rendered once and cached by it); every (scene, camera) row of its
V × T grid is one clip of T frames seen by a fixed camera while the primitives move. Clips are
positioned in time (θ_t = 2π·t/T, `positions = "time"`), with no poses: the extrinsics are the
identity (the camera does not move within a clip) and Kaleido is given θ_t instead.
"""

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from einops import rearrange, repeat

from seqrender.experiments.data.dynamic import Embedded4DConfig, embedded4d_dataset
from seqrender.posenc import frame_angles


@dataclass(frozen=True)
class EmbeddedVideoConfig(Embedded4DConfig):
    layout: ClassVar[str] = "multiview"  # clips of frames: Kaleido's layout
    positions: ClassVar[str] = "time"


def embedded_video_dataset(config: EmbeddedVideoConfig = EmbeddedVideoConfig(), *, split: str = "train",
                           views: int = 4, seed: int = 0, progress: bool = True):
    """Builder of dataset "embedded_video": the clips of `split` as a `SceneTensors` of S·V clips
    (images (S·V, T, 3, H, W), intrinsics, identity extrinsics (S·V, T, 4, 4), times θ_t (S·V, T))."""
    from seqrender.experiments.batching import SceneTensors  # batching imports data: import here

    grids = embedded4d_dataset(Embedded4DConfig(**asdict(config)), split=split, progress=progress)
    clips, frames = grids.images.shape[0] * grids.images.shape[1], grids.images.shape[2]
    return SceneTensors(
        images=rearrange(grids.images, "s v t c h w -> (s v) t c h w"),
        intrinsics=repeat(grids.intrinsics, "s v i j -> (s v) t i j", t=frames),
        extrinsics=torch.eye(4).expand(clips, frames, 4, 4).clone(),
        times=frame_angles(frames).expand(clips, frames).clone(),
    )
