"""Held-out evaluation of novel view synthesis in the settings "n->m" (n references -> m targets).

Eval item i is held-out scene i mod S with 4 views picked by the stream keyed (eval seed, i); setting
"n->m" takes the first n as references and the next m as targets. Methods: a model sampled with the
configured schedule/solver/guidance (the trained EMA and the untrained init), `mean_reference`
(pixel mean of the references) and `nearest_reference` (the reference whose camera centre is
nearest the target's). PSNR and SSIM (seqrender.recon.metrics) on each target view in [0, 1],
averaged over all target views.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.config import RunConfig
from seqrender.experiments.data.seeding import generator_from
from seqrender.recon.metrics import psnr, ssim

# A method maps an EvalBatch to predicted images (B, V, 3, H, W) in [0, 1] (targets are scored).
Method = Callable[["EvalBatch"], Tensor]


@dataclass
class EvalBatch:
    """images (B, V, 3, H, W) in [0, 1]; is_reference (B, V) bool; intrinsics (B, V, 3, 3);
    extrinsics (B, V, 4, 4); noise (B, V, 3, H, W)."""

    images: Tensor
    is_reference: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    noise: Tensor


def parse_setting(setting: str) -> tuple[int, int]:
    """"3->1" -> (3, 1)."""
    refs, targets = setting.split("->")
    return int(refs), int(targets)


def eval_batches(scenes: SceneTensors, setting: str, *, num_items: int, batch_size: int, seed: int):
    """Yield EvalBatch objects covering items 0..num_items-1 for `setting`."""
    refs, targets = parse_setting(setting)
    views = refs + targets
    if views > scenes.views:
        raise ValueError(f"eval setting {setting} needs {views} views; scenes have {scenes.views}")
    for start in range(0, num_items, batch_size):
        items = range(start, min(num_items, start + batch_size))
        picks = [(i % len(scenes), _pick_views(scenes.views, seed, i)[:views]) for i in items]
        images = torch.stack([scenes.images[s, v] for s, v in picks])
        yield EvalBatch(
            images=images,
            is_reference=(torch.arange(views) < refs).expand(len(picks), views),
            intrinsics=torch.stack([scenes.intrinsics[s, v] for s, v in picks]),
            extrinsics=torch.stack([scenes.extrinsics[s, v] for s, v in picks]),
            noise=torch.stack([torch.randn(images.shape[1:], generator=generator_from(seed, i, 1)) for i in items]),
        )


def _pick_views(available: int, seed: int, item: int) -> Tensor:
    """The fixed seeded selection of views for eval item `item` (4 views, or all if fewer)."""
    return torch.randperm(available, generator=generator_from(seed, item))[:4]


def sampling_method(cfg: RunConfig, velocity_for: Callable) -> Method:
    """Sample the generated part (everything but `batch.is_reference`, which stays clean) with the
    configured schedule, solver and guidance. `velocity_for(batch, x)` gives the solver's velocity
    function for a batch whose clean images in [-1, 1] are x."""
    schedule = cfg.schedule.build()
    solve = cfg.solver.build()

    @torch.no_grad()
    def predict(batch) -> Tensor:
        x = batch.images * 2 - 1
        keep = batch.is_reference[..., None, None, None]
        out = solve(velocity_for(batch, x), batch.noise, schedule, guidance_scale=cfg.eval.guidance_scale,
                    clean=x, keep_mask=keep)
        return ((out + 1) / 2).clamp(0, 1)

    return predict


def model_method(model: nn.Module, cfg: RunConfig) -> Method:
    """Sample the targets with the configured schedule, solver and guidance; references stay clean."""
    def velocity_for(batch: EvalBatch, x: Tensor):
        def velocity(z: Tensor, t: Tensor, *, drop_condition: Tensor) -> Tensor:
            rep = z.shape[0] // x.shape[0]      # 2 when CFG batches conditional + unconditional
            return model(z, t, is_reference=batch.is_reference.repeat(rep, 1),
                         intrinsics=batch.intrinsics.repeat(rep, 1, 1, 1),
                         extrinsics=batch.extrinsics.repeat(rep, 1, 1, 1), drop_condition=drop_condition,
                         images=batch.images.repeat(rep, 1, 1, 1, 1))  # aux encoder reads references only
        return velocity

    return sampling_method(cfg, velocity_for)


def mean_reference(batch: EvalBatch) -> Tensor:
    """Every view predicted as the pixel mean of the references."""
    w = batch.is_reference.to(batch.images.dtype)[:, :, None, None, None]
    mean = (batch.images * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    return mean.expand_as(batch.images)


def camera_centres(extrinsics: Tensor) -> Tensor:
    """(..., 4, 4) world-to-camera -> (..., 3) camera centres C = −Rᵀt."""
    rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3:]
    return -(rot.transpose(-1, -2) @ trans)[..., 0]


def nearest_reference(batch: EvalBatch) -> Tensor:
    """Every view predicted as the reference whose camera centre is nearest its own."""
    centres = camera_centres(batch.extrinsics)                              # (B, V, 3)
    dist = torch.cdist(centres, centres)                                     # (B, V, V)
    dist = dist.masked_fill(~batch.is_reference[:, None, :], float("inf"))
    nearest = dist.argmin(-1)                                                # (B, V)
    return torch.stack([batch.images[b, nearest[b]] for b in range(len(nearest))])


def score(predict: Method, batches: list[EvalBatch]) -> tuple[dict[str, float], list[Tensor]]:
    """Mean PSNR/SSIM over target views, and the predictions per batch."""
    psnrs, ssims, preds = [], [], []
    for batch in batches:
        pred = predict(batch)
        targets = ~batch.is_reference
        psnrs.append(psnr(pred[targets], batch.images[targets]))
        ssims.append(ssim(pred[targets], batch.images[targets]))
        preds.append(pred)
    return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}, preds


def score_methods(methods: dict[str, Method], batches: dict[str, list], *, progress: bool = True):
    """batches {setting: [batch, ...]} -> ({setting: {method: {"psnr", "ssim"}}}, and per setting
    (batches, the "trained" method's predictions))."""
    results, samples = {}, {}
    for setting, setting_batches in batches.items():
        results[setting] = {}
        for name, method in tqdm(methods.items(), desc=f"eval {setting}", disable=not progress):
            results[setting][name], preds = score(method, setting_batches)
            if name == "trained":
                samples[setting] = (setting_batches, preds)
    return results, samples


def evaluate(cfg: RunConfig, scenes: SceneTensors, models: dict[str, nn.Module], *, progress: bool = True):
    """{setting: {method: {"psnr", "ssim"}}} and, per setting, (batches, trained predictions)."""
    methods: dict[str, Method] = {name: model_method(m.eval(), cfg) for name, m in models.items()}
    methods |= {"mean_reference": mean_reference, "nearest_reference": nearest_reference}
    batches = {setting: list(eval_batches(scenes, setting, num_items=cfg.eval.num_items,
                                          batch_size=cfg.eval.batch_size, seed=cfg.eval.seed))
               for setting in cfg.eval.settings}
    return score_methods(methods, batches, progress=progress)
