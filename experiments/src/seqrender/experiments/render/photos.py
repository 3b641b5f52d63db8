"""Photos of an embedded scene for structure-from-motion: the scene's primitives (as the embedded
dataset generates them) on a floor, with a solid texture (data.texture) so SIFT finds features, seen
from an orbit at a resolution SfM can handle. No poses are written: only the images.

    python -m seqrender.experiments.render.photos OUT_DIR [--scene 300] [--views 24] [--size 160]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from seqrender.experiments.data import OrbitConfig, generator_from, make_scene, orbit_cameras, render
from seqrender.experiments.data.primitives import Box, Primitive
from seqrender.experiments.data.texture import SolidTexture
from seqrender.experiments.render.outputs import write_frames

HELDOUT_SCENE = 300  # scene index 300 of the default embedded dataset = heldout:12


def floor(height: float = -0.75, half_width: float = 2.0) -> Box:
    """A thin light-grey slab under the scene (world z up): SfM needs features spread over the image."""
    return Box(torch.tensor([0.0, 0.0, height - 0.05]), torch.eye(3), half_extents=torch.tensor([half_width, half_width, 0.05]),
               face_colours=torch.full((6, 3), 0.8))


def scene_primitives(scene: int, *, seed: int = 0) -> list[Primitive]:
    """Embedded scene `scene` (dataset seed `seed`) on a floor."""
    return [*make_scene(generator_from(seed, scene)), floor()]


def textured_views(scene: int, *, views: int = 24, size: int = 160, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """images (V, 3, size, size) in [0, 1] on white, intrinsics (V, 3, 3), extrinsics (V, 4, 4) of an
    evenly spaced orbit (elevations 15°/35°, as the embedded dataset's)."""
    intrinsics, extrinsics = orbit_cameras(views, height=size, width=size, generator=generator_from(seed, scene, 1),
                                           config=OrbitConfig(azimuth_jitter=0.0))
    out = render(scene_primitives(scene, seed=seed), intrinsics, extrinsics, height=size, width=size,
                 supersample=2, texture=SolidTexture())
    return out.composite((1.0, 1.0, 1.0)).clamp(0, 1), intrinsics, extrinsics


def write_photos(folder: Path, images: Tensor) -> list[Path]:
    """photo_00.png ... for (V, 3, H, W) images in [0, 1]."""
    return write_frames(folder, images, name="photo_{:02d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scene", type=int, default=HELDOUT_SCENE)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    images, _, _ = textured_views(args.scene, views=args.views, size=args.size)
    print(f"wrote {len(write_photos(args.out, images))} photos to {args.out}")


if __name__ == "__main__":
    main()
