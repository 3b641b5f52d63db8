"""Streaming training data: samples read from disk by a torch `DataLoader` with worker processes,
instead of one tensor holding every scene.

`StreamedSamples[(step, index)]` is training sample `index` of step `step`: the scene, its views,
reference split, t, noise and condition coin come from `batching.ViewSampling` (keyed by
(seed, step, index)), only the pixels are read from the scene dataset (resized and centre-cropped
to the training resolution, intrinsics updated: `scene_dataset.resize_crop`). `StreamingDraw` is
the task's `draw(step, indices)`: once `start`ed with the run's plan (first step, last step, the
process's micro-batches) a DataLoader prefetches exactly those samples in that order; a request
off the plan (e.g. the throughput meter's one-sample probe) is computed in-process. Either way the
batch is the same pure function of (seed, step, index), so resume and DDP stay exact.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqrender.experiments.batching import TrainBatch, ViewSampling, collate
from seqrender.posenc import frame_angles

Key = tuple[int, int]  # (step, global sample index)


def clip_times(frames: torch.Tensor, count: int) -> torch.Tensor:
    """θ_t (V,) of frames (V,) of a clip with `count` kept frames: linear, 2π·f/count (SPEC §2)."""
    return frame_angles(count)[frames.long()]


def read_views(dataset, scene: int, frames: torch.Tensor, *, time_positions: bool) -> dict:
    """Views `frames` of scene `scene` of a SceneDataset / MultiViewDataset, read from disk:
    images (V, 3, H, W), intrinsics (V, 3, 3), extrinsics (V, 4, 4), times (V,) θ_t or None."""
    item = dataset.get_item(scene, frames=frames.tolist())
    times = clip_times(frames, len(dataset.cameras[scene])) if time_positions else None
    return {"images": item["images"], "intrinsics": item["intrinsics"], "extrinsics": item["extrinsics"],
            "times": times}


class StreamedSamples(Dataset):
    """Training samples keyed (step, index) over a scene dataset on disk (see the module doc)."""

    def __init__(self, dataset, sampling: ViewSampling, *, time_positions: bool = False):
        self.dataset, self.sampling, self.time_positions = dataset, sampling, time_positions

    def __len__(self) -> int:  # scenes; samples are addressed by (step, index), not by position
        return len(self.dataset)

    def __getitem__(self, key: Key) -> dict:
        step, index = key
        return self.sampling.sample(step, index, num_scenes=len(self.dataset),
                                    frames_of=lambda s: len(self.dataset.cameras[s]),
                                    read=lambda s, f: read_views(self.dataset, s, f,
                                                                 time_positions=self.time_positions))

    def batch(self, step: int, indices: Sequence[int]) -> TrainBatch:
        return collate([self[(step, g)] for g in indices])


class PlanSampler(Sampler):
    """Batches of keys: for each step in [start, stop), one batch per micro-batch range in `parts`."""

    def __init__(self, start: int, stop: int, parts: Sequence[range]):
        self.start, self.stop, self.parts = start, stop, [list(p) for p in parts]

    def __iter__(self) -> Iterator[list[Key]]:
        for step in range(self.start, self.stop):
            for part in self.parts:
                yield [(step, g) for g in part]

    def __len__(self) -> int:
        return (self.stop - self.start) * len(self.parts)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


class StreamingDraw:
    """`draw(step, indices)` over `StreamedSamples`, prefetched by `workers` processes once started."""

    def __init__(self, samples: StreamedSamples, *, workers: int = 0, prefetch: int = 2):
        self.samples, self.workers, self.prefetch = samples, workers, prefetch
        self._batches: Iterator[TrainBatch] | None = None
        self._plan: Iterator[list[Key]] | None = None
        self._next: list[Key] | None = None

    def start(self, start: int, stop: int, parts: Sequence[range]) -> None:
        """Prefetch the batches of steps [start, stop), micro-batch ranges `parts` each, in order."""
        plan = PlanSampler(start, stop, parts)
        if len(plan) == 0:
            return
        extra = {"prefetch_factor": self.prefetch, "worker_init_fn": _one_thread} if self.workers else {}
        loader = DataLoader(self.samples, batch_sampler=plan, num_workers=self.workers, collate_fn=collate, **extra)
        self._batches, self._plan = iter(loader), iter(plan)
        self._next = next(self._plan)

    def __call__(self, step: int, indices: Sequence[int]) -> TrainBatch:
        if self._next is not None and self._next == [(step, g) for g in indices]:
            self._next = next(self._plan, None)
            try:
                return next(self._batches)
            except Exception:  # a worker failed (e.g. a corrupt image): redo it here for the original
                self._next = None  # one-line error (the loader wraps it in a multi-line traceback)
        return self.samples.batch(step, indices)
