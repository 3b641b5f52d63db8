"""Masked-autoregressive any-to-any generation (Kaleido §3.1).

When the references and all targets fit the model's view budget, every target is generated in one
pass. Otherwise the targets are generated a chunk at a time, in trajectory order: each chunk is
conditioned on at most `max_references` known views (inputs and already generated views), those
whose camera centres are nearest the chunk's, and once generated joins the known views.
The sampling itself is `evaluate.model_method`'s (schedule, solver, guidance of the run config).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqrender.experiments.evaluate import EvalBatch, Method, camera_centres


@dataclass
class Views:
    """images (V, 3, H, W) in [0, 1]; intrinsics (V, 3, 3) pixels; extrinsics (V, 4, 4) world-to-camera."""

    images: Tensor
    intrinsics: Tensor
    extrinsics: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def select(self, index: Tensor | slice) -> "Views":
        return Views(self.images[index], self.intrinsics[index], self.extrinsics[index])

    def cat(self, other: "Views") -> "Views":
        return Views(*(torch.cat(pair) for pair in zip(vars(self).values(), vars(other).values())))


def chunks(num_references: int, num_targets: int, *, budget: int, chunk_size: int) -> list[range]:
    """Target index ranges generated per pass: one pass when everything fits `budget` views."""
    if num_references + num_targets <= budget:
        return [range(num_targets)]
    return [range(s, min(num_targets, s + chunk_size)) for s in range(0, num_targets, chunk_size)]


def nearest_references(known: Tensor, targets: Tensor, cap: int) -> Tensor:
    """Indices (≤ cap,) of the known cameras (K, 4, 4) whose centres are nearest any of the target
    cameras (T, 4, 4), in their original order (ties: lower index first)."""
    if len(known) <= cap:
        return torch.arange(len(known))
    dist = torch.cdist(camera_centres(known.double()), camera_centres(targets.double())).amin(1)   # (K,)
    order = sorted(range(len(known)), key=lambda i: (float(dist[i]), i))
    return torch.tensor(sorted(order[:cap]))


def generate_pass(predict: Method, references: Views, targets: Views, noise: Tensor) -> Tensor:
    """One sampling pass: references (N views) + targets (M views, images unused) -> (M, 3, H, W).
    noise (M, 3, H, W) is the targets' initial noise."""
    views = references.cat(targets)
    batch = EvalBatch(
        images=views.images[None],
        is_reference=(torch.arange(len(views)) < len(references))[None],
        intrinsics=views.intrinsics[None],
        extrinsics=views.extrinsics[None],
        noise=torch.cat([torch.zeros_like(references.images), noise])[None],
    )
    return predict(batch)[0, len(references):]


def generate(predict: Method, inputs: Views, intrinsics: Tensor, extrinsics: Tensor, noise: Tensor, *,
             budget: int, chunk_size: int, max_references: int, progress: bool = False) -> Tensor:
    """Render the target cameras (intrinsics (T, 3, 3), extrinsics (T, 4, 4)) from the input views.

    noise (T, 3, H, W): the initial noise of each target (so a target's noise does not depend on the
    chunking). Returns (T, 3, H, W) in [0, 1]."""
    placeholder = torch.zeros_like(noise)
    targets = Views(placeholder, intrinsics, extrinsics)
    passes = chunks(len(inputs), len(targets), budget=budget, chunk_size=chunk_size)
    cap = len(inputs) if len(passes) == 1 else max_references
    known, out = inputs, []
    for part in tqdm(passes, desc="render", unit="pass", disable=not progress):
        chunk = targets.select(slice(part.start, part.stop))
        refs = known.select(nearest_references(known.extrinsics, chunk.extrinsics, cap))
        images = generate_pass(predict, refs, chunk, noise[part.start:part.stop])
        known = known.cat(Views(images, chunk.intrinsics, chunk.extrinsics))
        out.append(images)
    return torch.cat(out)
