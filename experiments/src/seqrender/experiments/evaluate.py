"""Held-out evaluation of novel view synthesis in the settings "n->m" (n references -> m targets).

Eval item i is held-out scene i mod S with 4 views picked by the stream keyed (eval seed, i); setting
"n->m" takes the first n as references and the next m as targets. Methods: a model sampled with the
configured schedule/solver/guidance (the trained EMA and the untrained init), `mean_reference`
(pixel mean of the references) and `nearest_reference` (the reference whose camera centre is
nearest the target's). PSNR and SSIM (seqrender.recon.metrics) on each target view in [0, 1],
averaged over all target views.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqrender.experiments.batching import SceneTensors, positions, to_device
from seqrender.experiments import stats
from seqrender.experiments.config import Component, RunConfig
from seqrender.experiments.data.seeding import generator_from
from seqrender.models import registry
from seqrender.recon.metrics import psnr, ssim

# A method maps an EvalBatch to predicted images (B, V, 3, H, W) in [0, 1] (targets are scored).
Method = Callable[["EvalBatch"], Tensor]


@dataclass
class EvalBatch:
    """images (B, V, 3, H, W) in [0, 1]; is_reference (B, V) bool; intrinsics (B, V, 3, 3);
    extrinsics (B, V, 4, 4); noise (B, V, 3, H, W); times (B, V) θ_t of clips (then no poses) or None."""

    images: Tensor
    is_reference: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    noise: Tensor
    times: Tensor | None = None


def parse_setting(setting: str) -> tuple[int, int]:
    """"3->1" -> (3, 1)."""
    refs, targets = setting.split("->")
    return int(refs), int(targets)


def eval_batches(scenes: SceneTensors, setting: str, *, num_items: int, batch_size: int, seed: int,
                 shuffle_references: bool = False):
    """Yield EvalBatch objects covering items 0..num_items-1 for `setting`.

    With `shuffle_references` the reference views (images and poses) of item i are those of item
    i + S // 2 (another held-out scene, S scenes); its targets, target poses and noise are unchanged."""
    refs, targets = parse_setting(setting)
    views = refs + targets
    if views > scenes.views:
        raise ValueError(f"eval setting {setting} needs {views} views; scenes have {scenes.views}")
    if shuffle_references and len(scenes) < 2:
        raise ValueError("shuffled references need at least 2 held-out scenes")
    donor_offset = max(1, len(scenes) // 2) if shuffle_references else 0
    for start in range(0, num_items, batch_size):
        items = range(start, min(num_items, start + batch_size))
        views_of = [_item_views(scenes, seed, i, refs, views, donor_offset) for i in items]  # [(scene, view)] * V
        take = lambda field: torch.stack([torch.stack([field[s, v] for s, v in item]) for item in views_of])
        images = take(scenes.images)
        yield EvalBatch(
            images=images,
            is_reference=(torch.arange(views) < refs).expand(len(items), views),
            intrinsics=take(scenes.intrinsics),
            extrinsics=take(scenes.extrinsics),
            noise=torch.stack([torch.randn(images.shape[1:], generator=generator_from(seed, i, 1)) for i in items]),
            times=None if scenes.times is None else take(scenes.times),
        )


def _item_views(scenes: SceneTensors, seed: int, item: int, refs: int, views: int,
                donor_offset: int) -> list[tuple[int, int]]:
    """(scene, view) of each of item `item`'s views: references first, then targets; references from
    item `item + donor_offset` when that is non-zero."""
    own = [(item % len(scenes), int(v)) for v in _pick_views(scenes.views, seed, item)[:views]]
    if not donor_offset:
        return own
    donor = item + donor_offset
    return [(donor % len(scenes), int(v)) for v in _pick_views(scenes.views, seed, donor)[:refs]] + own[refs:]


def _pick_views(available: int, seed: int, item: int) -> Tensor:
    """The fixed seeded selection of views for eval item `item` (4 views, or all if fewer)."""
    return torch.randperm(available, generator=generator_from(seed, item))[:4]


def sampling_method(cfg: RunConfig, velocity_for: Callable, vae=None, anchor_for: Callable | None = None,
                    schedule: Tensor | None = None, device: torch.device | None = None) -> Method:
    """Sample the generated part (everything but `batch.is_reference`, which stays clean) with the
    configured schedule, solver and guidance. `velocity_for(batch, x)` gives the solver's velocity
    function for a batch whose clean images in [-1, 1] are x. With a `vae` (latent-space runs) the
    sampling runs on its latents (`latent.to_latent_batch`) and the result is decoded to images.
    `anchor_for(batch, x)`: for a residual data space, what is added to the sampled generated part
    (zero on the references). `schedule` (n + 1,): integrate over it from `batch.noise` instead of the
    configured schedule (diagnose.restart_from_truth). `device`: where the model runs (a GPU): each
    batch is sampled there and its prediction comes back to the batch's device, where the metrics
    are computed (None: where the batch is)."""
    schedule = cfg.schedule.build() if schedule is None else schedule
    solve = cfg.solver.build()

    @torch.no_grad()
    def predict(batch) -> Tensor:
        home = batch.images.device
        if device is not None:
            batch = to_device(batch, device)
        x, noise = batch.images * 2 - 1, batch.noise
        if vae is not None:
            from seqrender.experiments.latent import to_latent_batch

            batch, x, noise = to_latent_batch(batch, x, vae)
        keep = batch.is_reference[..., None, None, None]
        out = solve(velocity_for(batch, x), noise, schedule, guidance_scale=cfg.eval.guidance_scale,
                    clean=x, keep_mask=keep)
        if anchor_for is not None:
            out = out + anchor_for(batch, x)
        if vae is not None:
            out = vae.decode(out)
        return ((out + 1) / 2).clamp(0, 1).to(home)

    return predict


def model_method(model: nn.Module, cfg: RunConfig, vae=None, schedule: Tensor | None = None) -> Method:
    """Sample the targets with the configured schedule, solver and guidance; references stay clean.
    `vae`: the run's frozen AutoencoderKL for latent-space runs (None: pixel space); `schedule`: as
    in sampling_method."""
    def velocity_for(batch: EvalBatch, x: Tensor):
        def velocity(z: Tensor, t: Tensor, *, drop_condition: Tensor) -> Tensor:
            rep = z.shape[0] // x.shape[0]      # 2 when CFG batches conditional + unconditional
            where = positions(batch.extrinsics.repeat(rep, 1, 1, 1),
                              None if batch.times is None else batch.times.repeat(rep, 1))
            return model(z, t, is_reference=batch.is_reference.repeat(rep, 1),
                         intrinsics=batch.intrinsics.repeat(rep, 1, 1, 1), drop_condition=drop_condition,
                         images=batch.images.repeat(rep, 1, 1, 1, 1), **where)  # aux encoder: references only
        return velocity

    return sampling_method(cfg, velocity_for, vae, schedule=schedule, device=device_of(model))


def device_of(model: nn.Module | Callable) -> torch.device | None:
    """The device of the model's first parameter; None for a plain function or a model without any."""
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return None if parameter is None else parameter.device


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


_SHARDED: ContextVar[bool] = ContextVar("sharded_eval", default=False)


@contextmanager
def sharded() -> Iterator[None]:
    """Inside this block every rank of a distributed run must evaluate the same methods: each scores
    every world-th batch and the scores and predictions are gathered, so all ranks return what one
    process would (up to float rounding of other thread counts)."""
    token = _SHARDED.set(True)
    try:
        yield
    finally:
        _SHARDED.reset(token)


def _shard() -> tuple[int, int]:
    """(rank, world size) of the sharded evaluation, (0, 1) outside `sharded()`."""
    if _SHARDED.get() and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def score(predict: Method, batches: list) -> tuple[dict[str, np.ndarray], list[Tensor]]:
    """Per-item PSNR/SSIM (each the mean over the item's target views) and the predictions per batch.

    Returns ({"psnr": (N,), "ssim": (N,)} float64 arrays over the N items, [pred (B, ...), ...])."""
    rank, world = _shard()
    mine = {i: _score_batch(predict, batches[i]) for i in range(rank, len(batches), world)}
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, mine)
        mine = {i: result for part in gathered for i, result in part.items()}
    ordered = [mine[i] for i in range(len(batches))]
    per_item = {k: torch.cat([r[0][k] for r in ordered]).numpy() for k in ("psnr", "ssim")}
    return per_item, [r[1] for r in ordered]


def _score_batch(predict: Method, batch) -> tuple[dict[str, Tensor], Tensor]:
    """({"psnr": (B,), "ssim": (B,)} per-item means over target views, predictions)."""
    pred = predict(batch)
    targets = ~batch.is_reference                                           # (B, V) or (B, V, T)
    counts = targets.flatten(1).sum(1)                                      # (B,)
    item = torch.arange(len(targets)).repeat_interleave(counts)
    out = {}
    for name, metric in (("psnr", psnr), ("ssim", ssim)):
        per_view = metric(pred[targets], batch.images[targets]).double()    # (targets in batch,)
        out[name] = torch.zeros(len(targets), dtype=torch.float64).index_add_(0, item, per_view) / counts
    return out, pred


def summarise(per_item: dict[str, dict[str, np.ndarray]], *, reference: str = "trained",
              samples: int = 2000, seed: int = 0) -> dict[str, dict]:
    """{method: {"psnr": (N,), "ssim": (N,)}} -> {method: {"psnr", "ssim", "psnr_ci95", "ssim_ci95",
    "items", and for the other methods "psnr_minus_<reference>" / "ssim_minus_<reference>"
    {"mean", "ci95"} of the paired per-item differences}}. 95 % bootstrap intervals over items."""
    out = {}
    for method, scores in per_item.items():
        row: dict = {"items": len(scores["psnr"])}
        for name, values in scores.items():
            s = stats.summary(values, samples=samples, seed=seed)
            row[name], row[f"{name}_ci95"] = s["mean"], s["ci95"]
            if method != reference and reference in per_item:
                row[f"{name}_minus_{reference}"] = stats.summary(values - per_item[reference][name],
                                                                 samples=samples, seed=seed)
        out[method] = row
    return out


def score_methods(methods: dict[str, tuple[Method, list]], *, bootstrap: int = 2000, progress: bool = True,
                  desc: str = "eval"):
    """methods {name: (method, batches)} -> ({name: scores with intervals}, {name: (batches, preds)})."""
    per_item, outputs = {}, {}
    for name, (method, batches) in tqdm(methods.items(), desc=desc, disable=not progress):
        per_item[name], preds = score(method, batches)
        outputs[name] = (batches, preds)
    return summarise(per_item, samples=bootstrap), outputs


def one_step(cfg: RunConfig) -> RunConfig:
    """`cfg` with the posterior-mean sampler: one Euler step from t = 1, no guidance."""
    schedule = cfg.schedule.config
    if not hasattr(schedule, "num_steps"):
        raise ValueError(f"schedule {cfg.schedule.name!r} has no num_steps field")
    return cfg.model_copy(update={
        "schedule": Component("schedule", cfg.schedule.name, dataclasses.replace(schedule, num_steps=1)),
        "solver": Component("solver", "euler", registry.config_class("solver", "euler")()),
        "eval": cfg.eval.model_copy(update={"guidance_scale": 1.0})})


def evaluate(cfg: RunConfig, scenes: SceneTensors, models: dict[str, nn.Module], *, progress: bool = True,
             vae=None):
    """Per setting: {method: scores with 95 % intervals} and (batches, predictions) of "trained".

    Rows: "trained" (EMA, configured sampler and guidance), "trained_1step" (posterior mean),
    "shuffled_references" (trained sampler, references taken from another held-out scene, targets
    and their poses unchanged; only with at least 2 held-out scenes, and in the settings of
    `eval.shuffled_settings` when it is set), "untrained" (its velocity is exactly zero, so every sampler returns
    the noise: scored with one step), and the baselines "mean_reference" and "nearest_reference".
    `vae`: latent-space runs sample latents and score the decoded images."""
    trained = models["trained"].eval()
    sample_trained = model_method(trained, cfg, vae)
    results, samples = {}, {}
    for setting in cfg.eval.settings:
        batches = list(eval_batches(scenes, setting, num_items=cfg.eval.num_items,
                                    batch_size=cfg.eval.batch_size, seed=cfg.eval.seed))
        methods = {"trained": (sample_trained, batches),
                   "trained_1step": (model_method(trained, one_step(cfg), vae), batches)}
        shuffle = cfg.eval.shuffled_settings is None or setting in cfg.eval.shuffled_settings
        if shuffle and len(scenes) >= 2:  # another held-out scene to take the references from
            shuffled = list(eval_batches(scenes, setting, num_items=cfg.eval.num_items, batch_size=cfg.eval.batch_size,
                                         seed=cfg.eval.seed, shuffle_references=True))
            methods["shuffled_references"] = (sample_trained, shuffled)
        methods |= {name: (model_method(m.eval(), one_step(cfg), vae), batches)
                    for name, m in models.items() if name != "trained"}
        methods |= {"mean_reference": (mean_reference, batches), "nearest_reference": (nearest_reference, batches)}
        results[setting], outputs = score_methods(methods, bootstrap=cfg.eval.bootstrap_samples,
                                                  progress=progress, desc=f"eval {setting}")
        samples[setting] = outputs["trained"]
    return results, samples
