"""What a render leaves in its output folder: frames/frame_000.png ..., video.mp4 (PyAV, H.264),
video.gif, contact_sheet.png (the inputs beside the generated frames), cameras.json, render.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw
from torch import Tensor

from seqrender.experiments.checkpoint import atomic_write
from seqrender.experiments.report import TITLE_HEIGHT, draw_title, write_titled, zoom_nearest

GAP = 6          # pixels between the inputs block and the frames block of the contact sheet


def to_uint8(images: Tensor) -> np.ndarray:
    """(V, 3, H, W) in [0, 1] -> (V, H, W, 3) uint8."""
    return (rearrange(images.clamp(0, 1), "v c h w -> v h w c") * 255).round().to(torch.uint8).numpy()


def write_frames(folder: Path, images: Tensor, *, name: str = "frame_{:03d}.png") -> list[Path]:
    """One PNG per frame, frame_000.png ... (V, 3, H, W) in [0, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name.format(i) for i in range(len(images))]
    for path, pixels in zip(paths, to_uint8(images)):
        Image.fromarray(pixels).save(path)
    return paths


def upscale(pixels: np.ndarray, min_size: int) -> np.ndarray:
    """(V, H, W, 3) nearest-neighbour upscaled by the smallest integer giving ≥ min_size pixels
    on the short side, with even sides (H.264 needs them)."""
    zoom = max(1, math.ceil(min_size / min(pixels.shape[1:3])))
    big = pixels.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return big[:, : big.shape[1] // 2 * 2, : big.shape[2] // 2 * 2]


def write_mp4(path: Path, images: Tensor, *, fps: int, min_size: int = 256) -> None:
    """H.264 MP4 (yuv420p) of the frames via PyAV."""
    import av

    frames = upscale(to_uint8(images), min_size)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def write_gif(path: Path, images: Tensor, *, fps: int, min_size: int = 128) -> None:
    pictures = [Image.fromarray(p) for p in upscale(to_uint8(images), min_size)]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)


def _grid(pixels: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """(V, H, W, 3) -> one (rows·(H+pad), columns·(W+pad), 3) white-padded grid."""
    v, h, w, _ = pixels.shape
    rows = math.ceil(v / columns)
    canvas = np.full((rows * (h + pad), columns * (w + pad), 3), 255, dtype=np.uint8)
    for i, p in enumerate(pixels):
        r, c = divmod(i, columns)
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = p
    return canvas


def write_contact_sheet(path: Path, inputs: Tensor, frames: Tensor, *, truth: Tensor | None = None,
                        columns: int = 8, zoom: int = 3) -> None:
    """Inputs (a column block on the left) beside the generated frames (a grid), and below them the
    ground truth when known. inputs, frames, truth: (V, 3, H, W) in [0, 1]."""
    blocks = [("inputs", _grid(to_uint8(inputs), 1 if len(inputs) <= 4 else 2)),
              ("generated", _grid(to_uint8(frames), columns))]
    if truth is not None:
        blocks.append(("ground truth", _grid(to_uint8(truth), columns)))
    sizes = [(b.shape[1] * zoom, b.shape[0] * zoom) for _, b in blocks]
    width = sizes[0][0] + GAP + max(w for w, _ in sizes[1:])
    height = max(sizes[0][1], sum(h + TITLE_HEIGHT for _, h in sizes[1:])) + TITLE_HEIGHT
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    spots = [(0, 0)] + [(sizes[0][0] + GAP, sum(h + TITLE_HEIGHT for _, h in sizes[1:i])) for i in range(1, len(blocks))]
    for (title, block), (x, y) in zip(blocks, spots):
        draw_title(draw, (x, y), title)
        canvas.paste(zoom_nearest(block, zoom), (x, y + TITLE_HEIGHT))
    atomic_write(path, lambda p: canvas.save(p, format="PNG"))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def write_rows(path: Path, rows: list[list[Tensor]], *, title: str, zoom: int = 3) -> None:
    """A titled PNG of image rows: each row a list of blocks (V, 3, H, W) in [0, 1], laid left to
    right with a grey gap between blocks; rows stacked top to bottom (padded white to one width)."""
    lines = []
    for blocks in rows:
        h = blocks[0].shape[-2]
        gap = np.full((h, GAP, 3), 153, dtype=np.uint8)
        parts = [np.concatenate(list(to_uint8(b)), axis=1) for b in blocks]
        lines.append(np.concatenate([x for p in parts for x in (p, gap)][:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    pad = lambda a: np.pad(a, ((1, 1), (0, width - a.shape[1]), (0, 0)), constant_values=255)
    grid = np.concatenate([pad(line) for line in lines])
    write_titled(path, grid, title, zoom=zoom)
