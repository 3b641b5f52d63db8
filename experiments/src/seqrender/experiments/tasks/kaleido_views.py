"""Kaleido on multi-view scenes: references -> target views (the main job).

Batches: `batching.ViewSampling` (exponential number of references, the rest targets; random view
masking optional), from memory (`make_train_batch`) or streamed from disk (`streaming.py`). Clips
(datasets whose config says `positions = "time"`) are positioned by θ_t instead of poses. Loss:
velocity MSE on active target views. Evaluation: settings "n->m" with the trained EMA (the paper's
sampler), its one-step posterior mean, shuffled references, the untrained init and the reference
baselines (`evaluate.evaluate`). Pictures: `orbit.png`, 8 generated views around held-out scenes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqrender.experiments import report
from seqrender.experiments.batching import SceneTensors, TrainBatch, ViewSampling, make_train_batch
from seqrender.experiments.latent import load_vae
from seqrender.experiments.layouts import dataset_positions
from seqrender.experiments.streaming import StreamedSamples, StreamingDraw, clip_times
from seqrender.experiments.evaluate import device_of, eval_batches, evaluate, model_method, score, summarise
from seqrender.experiments.orbit import generate_orbits
from seqrender.experiments.tasks.base import Task, frame_time, register
from seqrender.recon.metrics import psnr

IN_MEMORY = ("embedded", "embedded_video")  # procedural datasets: small, kept in memory


class KaleidoViews(Task):
    name = "multiview"
    layout = "multiview"

    def load(self, cfg, split: str):
        """Split "heldout", and "train" unless streamed: every view of every scene, stacked
        (`SceneTensors`: images (S, N, 3, H, W), ...). A streamed "train" split is the dataset itself,
        read per sample by `batches` (`streaming.py`)."""
        dataset = cfg.dataset.build(split=split)
        if len(dataset) == 0:
            raise ValueError(f"dataset split {split!r} is empty: increase dataset.num_scenes")
        if isinstance(dataset, SceneTensors) or (split == "train" and streams(cfg)):
            return dataset
        return stack_scenes(dataset, time_positions=dataset_positions(cfg.dataset.name) == "time")

    def batches(self, cfg, data, sampler):
        tc = cfg.trainer
        frame_times = frame_time(cfg)
        if isinstance(data, SceneTensors):
            return lambda step, indices: make_train_batch(
                data, seed=cfg.seed, step=step, batch_size=tc.batch_size, views=tc.views, indices=indices,
                sampler=sampler, cond_drop_prob=tc.cond_drop_prob, random_masking=tc.random_masking,
                references=tc.fixed_references_or_none, frame_times=frame_times)
        sampling = ViewSampling(cfg.seed, tc.batch_size, tc.views, sampler, tc.cond_drop_prob, tc.random_masking,
                                tc.fixed_references_or_none, frame_times)
        samples = StreamedSamples(data, sampling, time_positions=dataset_positions(cfg.dataset.name) == "time")
        return StreamingDraw(samples, workers=tc.data_workers)

    def loss(self, model: nn.Module, batch: TrainBatch) -> Tensor:
        return flow_loss(model, batch)

    def evaluate(self, cfg, heldout: SceneTensors, models, *, progress: bool = True):
        return evaluate(cfg, heldout, models, progress=progress, vae=eval_vae(cfg, models["trained"]))

    def score_trained(self, cfg, heldout: SceneTensors, ema: nn.Module) -> dict:
        """Only the trained sampler (no baselines or extra rows): cheaper than `evaluate`."""
        out = {}
        for setting in cfg.eval.settings:
            batches = list(eval_batches(heldout, setting, num_items=cfg.eval.num_items,
                                        batch_size=cfg.eval.batch_size, seed=cfg.eval.seed))
            per_item, _ = score(model_method(ema.eval(), cfg, eval_vae(cfg, ema)), batches)
            out[setting] = summarise({"trained": per_item}, samples=cfg.eval.bootstrap_samples)["trained"]
        return out

    def pictures(self, cfg, heldout: SceneTensors, ema: nn.Module, run_dir) -> dict:
        """orbit.png; returns {"orbit_psnr": {"n references": dB}}."""
        if not cfg.eval.orbit:
            return {}
        orbit = orbits(cfg, heldout, ema)
        if orbit:
            report.write_orbit(run_dir / "orbit.png", orbit)
        return {"orbit_psnr": {f"{n} references": round(float(psnr(torch.cat([o.generated for o in os]),
                                                                    torch.cat([o.truth for o in os])).mean()), 3)
                               for n, os in orbit.items()}}


def flow_loss(model: nn.Module, batch: TrainBatch) -> Tensor:
    """Velocity MSE on active target views: mean per sample over its target tokens, then mean over
    samples. Scalar."""
    # RGB for the aux encoder (only references reach it): the batch's own in latent runs, else x in [0, 1]
    images = batch.images if batch.images is not None else (batch.x + 1) / 2
    pred = model(batch.noised(), batch.t, is_reference=batch.is_reference, intrinsics=batch.intrinsics,
                 frame_mask=batch.frame_mask, drop_condition=batch.drop_condition, images=images,
                 **batch.positions())
    err = (pred - (batch.noise - batch.x)).pow(2).mean(dim=(2, 3, 4))          # (B, V)
    mask = batch.loss_mask.to(err.dtype)
    return ((err * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()


def eval_vae(cfg, model: nn.Module):
    """The run's frozen VAE on `model`'s device (latent-space runs; None in pixel space)."""
    return load_vae(cfg, device_of(model))


def streams(cfg) -> bool:
    """Whether the training split is read per sample from disk: `trainer.stream` "on", or "auto" and
    a real-data format (everything but the procedural datasets, which stay in memory)."""
    return cfg.trainer.stream == "on" or (cfg.trainer.stream == "auto" and cfg.dataset.name not in IN_MEMORY)


def stack_scenes(dataset, *, time_positions: bool) -> SceneTensors:
    """Every kept frame of every scene of a SceneDataset / MultiViewDataset in one SceneTensors
    (scenes must keep equally many frames); times θ_t when the frames are clips positioned in time."""
    items = [dataset.get_item(i, frames=range(len(dataset.cameras[i]))) for i in range(len(dataset))]
    stacked = {k: torch.stack([item[k] for item in items]) for k in ("images", "intrinsics", "extrinsics")}
    times = torch.stack([clip_times(item["frames"], len(item["frames"])) for item in items]) if time_positions else None
    return SceneTensors(**stacked, times=times)


def orbits(cfg, heldout: SceneTensors, ema: nn.Module, *, scenes: int = 2) -> dict[int, list]:
    """{n: orbits of the first `scenes` held-out scenes generated from n = 1 and 3 references}."""
    predict = model_method(ema.eval(), cfg, eval_vae(cfg, ema))
    counts = [n for n in (1, 3) if n < cfg.trainer.views and n + 8 <= heldout.views]
    return {n: generate_orbits(predict, heldout, list(range(min(scenes, len(heldout)))), references=n,
                               views=cfg.trainer.views, seed=cfg.eval.seed) for n in counts}


register(KaleidoViews())
