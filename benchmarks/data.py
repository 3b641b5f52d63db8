"""Streaming data throughput: training frames/s read from disk by `streaming.StreamingDraw` (PNG
decode, resize + centre-crop with intrinsics, view sampling, noise) with 0, 1 and 2 DataLoader
workers, against drawing the same batches from scenes already in memory (`make_train_batch`).

Data: scenes in the nerfstudio layout, random-noise PNGs (worst case for PNG compression, so decode
cost is not flattered) at 256×256 (`--quick`: 128×128), resized to 64×64 for training; batches of 8
samples × 4 views, as `trainer.batch_size` / `trainer.views` would draw them. The loop only draws
batches: it is the data pipeline's ceiling, not a training step. Each row is timed after one warm-up
batch (workers started); 1 torch thread in the main process.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import parse_args, report
from seqrender.experiments.batching import ViewSampling, make_train_batch
from seqrender.experiments.data.nerfstudio import NerfstudioConfig, nerfstudio_dataset
from seqrender.experiments.data.scenes import orbit_cameras
from seqrender.experiments.streaming import StreamedSamples, StreamingDraw
from seqrender.experiments.tasks.kaleido_views import stack_scenes
from seqrender.flowmatch.timesteps import ModeSampler
from seqrender.posenc.conventions import opencv_w2c_to_opengl_c2w

BATCH, VIEWS, RESOLUTION = 8, 4, 64


def write_scenes(root: Path, scenes: int, frames: int, size: int) -> None:
    """`scenes` nerfstudio scenes of `frames` random-noise PNGs (size × size) on an orbit."""
    rng = np.random.default_rng(0)
    for s in range(scenes):
        k, w2c = orbit_cameras(frames, height=size, width=size, generator=torch.Generator().manual_seed(s))
        folder = root / f"scene_{s:03d}"
        (folder / "images").mkdir(parents=True)
        entries = []
        for i, c2w in enumerate(opencv_w2c_to_opengl_c2w(w2c.double())):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"{i:04d}.png")
            entries.append({"file_path": f"images/{i:04d}.png", "transform_matrix": c2w.tolist()})
        meta = {"fl_x": float(k[0, 0, 0]), "fl_y": float(k[0, 1, 1]), "cx": size / 2, "cy": size / 2, "w": size,
                "h": size, "frames": entries}
        (folder / "transforms.json").write_text(json.dumps(meta))


def frames_per_second(draw, steps: int) -> float:
    """Training frames per second of `draw(step, range(BATCH))` over steps 1..steps (step 0 warms up)."""
    draw(0, range(BATCH))
    start = time.perf_counter()
    for step in range(1, steps + 1):
        draw(step, range(BATCH))
    return steps * BATCH * VIEWS / (time.perf_counter() - start)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    size, scenes, frames, steps = (128, 6, 12, 8) if args.quick else (256, 12, 24, 30)
    sampling = ViewSampling(seed=0, batch_size=BATCH, views=VIEWS, sampler=ModeSampler(), cond_drop_prob=0.1,
                            random_masking=False)
    with tempfile.TemporaryDirectory() as tmp:
        write_scenes(Path(tmp), scenes + 1, frames, size)
        config = NerfstudioConfig(root=tmp, frames_per_scene=frames, resolution=RESOLUTION)
        dataset = nerfstudio_dataset(config, split="train")
        rows = []
        for workers in (0, 1, 2):
            draw = StreamingDraw(StreamedSamples(dataset, sampling), workers=workers)
            draw.start(0, steps + 1, [range(BATCH)])
            rows.append({"source": f"disk, {workers} worker{'s' * (workers != 1)}", "frames/s": frames_per_second(draw, steps)})
        memory = stack_scenes(dataset, time_positions=False)
        in_memory = lambda step, indices: make_train_batch(  # noqa: E731
            memory, seed=0, step=step, indices=indices, batch_size=BATCH, views=VIEWS, sampler=ModeSampler(),
            cond_drop_prob=0.1, random_masking=False)
        rows.append({"source": "memory (all scenes preloaded)", "frames/s": frames_per_second(in_memory, steps)})
    for row in rows:
        row["× 0 workers"] = row["frames/s"] / rows[0]["frames/s"]
    report("Streaming training data: frames/s", rows, json_path=args.json,
           source_images=f"{size}×{size} random-noise PNG", training_resolution=RESOLUTION,
           batch=f"{BATCH} samples × {VIEWS} views", scenes=scenes, steps_timed=steps)


if __name__ == "__main__":
    main()
