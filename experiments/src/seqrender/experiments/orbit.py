"""Orbits of held-out scenes: 8 views around a scene generated from 1 and from 3 references.

The embedded scenes' views are numbered in azimuth order around the orbit, so evenly spaced view
indices are evenly spaced cameras. Targets are generated in chunks that fit the trained view count
(`trainer.views` = references + chunk), each chunk from the same references with its own noise; the
chunks of all scenes are sampled as one batch with the evaluation's sampler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.data.seeding import generator_from
from seqrender.experiments.evaluate import EvalBatch, Method


@dataclass
class Orbit:
    """One scene's orbit: references (n, 3, H, W); truth and generated (T, 3, H, W) in [0, 1]."""

    scene: int
    references: Tensor
    truth: Tensor
    generated: Tensor


def orbit_views(num_views: int, *, targets: int, references: int) -> tuple[list[int], list[int]]:
    """(target views, reference views): `targets` evenly spaced views, and `references` views evenly
    spread over the rest (the first one just after target 0)."""
    if targets + references > num_views:
        raise ValueError(f"an orbit of {targets} targets and {references} references needs that many views; "
                         f"scenes have {num_views}")
    target_ids = sorted({round(i * num_views / targets) % num_views for i in range(targets)})
    rest = [v for v in range(num_views) if v not in target_ids]
    ref_ids = [rest[round(i * len(rest) / references)] for i in range(references)]
    return target_ids, ref_ids


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def generate_orbits(predict: Method, scenes: SceneTensors, scene_ids: list[int], *, references: int,
                    views: int, targets: int = 8, seed: int = 0) -> list[Orbit]:
    """Generate `targets` orbit views of each scene in `scene_ids` from `references` references, in
    chunks of `views - references` targets. `predict` maps an EvalBatch to images (B, V, 3, H, W)."""
    chunk = views - references
    if chunk < 1:
        raise ValueError(f"an orbit from {references} references needs trainer.views > {references}")
    target_ids, ref_ids = orbit_views(scenes.views, targets=targets, references=references)
    parts = [(s, c) for s in scene_ids for c in _chunks(target_ids, chunk)]
    # Pad a short last chunk by repeating its last target (its extra output is ignored).
    picks = [(s, ref_ids + c + [c[-1]] * (chunk - len(c))) for s, c in parts]
    images = torch.stack([scenes.images[s, v] for s, v in picks])                 # (B, V, 3, H, W)
    batch = EvalBatch(
        images=images,
        is_reference=(torch.arange(views) < references).expand(len(picks), views),
        intrinsics=torch.stack([scenes.intrinsics[s, v] for s, v in picks]),
        extrinsics=torch.stack([scenes.extrinsics[s, v] for s, v in picks]),
        noise=torch.stack([torch.randn(images.shape[1:], generator=generator_from(seed, s, references, i))
                           for i, (s, _) in enumerate(picks)]),
    )
    pred = predict(batch)
    orbits = []
    for s in scene_ids:
        rows = [(i, c) for i, (ps, c) in enumerate(parts) if ps == s]
        generated = torch.cat([pred[i, references:references + len(c)] for i, c in rows])
        orbits.append(Orbit(s, scenes.images[s, ref_ids], scenes.images[s, target_ids], generated))
    return orbits
