"""How much a trained Kaleido uses its references, by noise level.

For held-out items of one setting and a grid of timesteps t, the targets are put on the path
z_t = (1 − t)·x + t·ε and the model's velocity error ‖v̂ − (ε − x)‖² (mean over target pixels) is
measured three ways: with the true references, with the references of another held-out scene
(`eval_batches(..., shuffle_references=True)`), and with the references' content dropped (the
unconditional branch of classifier-free guidance). Where the three agree the model ignores its
references at that noise level.

`restart_from_truth` asks where sampling goes wrong: it restarts the run's own sampler (schedule,
solver, guidance) from the targets' ground truth noised to t0, for several t0 on the schedule
(SDEdit). Up to the t0 where the restarts still give clean views, the model's low-noise steps are
sound; the first t0 whose restarts look like full samples is where the artefacts are made.
Run: `python experiments/diagnose.py RUN_DIR [--items N] [--restart]`.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from seqrender import flowmatch
from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.config import RunConfig
from seqrender.experiments.evaluate import EvalBatch, eval_batches, model_method, score

MODES = ("true", "shuffled", "dropped")


def velocity_error(model: nn.Module, batch: EvalBatch, t: float, *, drop: bool) -> Tensor:
    """(B,) mean squared velocity error over each item's target pixels at timestep t."""
    x = batch.images * 2 - 1
    tt = torch.full((x.shape[0],), t)
    keep = batch.is_reference[..., None, None, None]
    z = torch.where(keep, x, flowmatch.interpolate(x, batch.noise, tt))
    with torch.no_grad():
        v = model(z, tt, is_reference=batch.is_reference, intrinsics=batch.intrinsics,
                  extrinsics=batch.extrinsics, drop_condition=torch.full((x.shape[0],), drop))
    err = (v - (batch.noise - x)).pow(2).mean(dim=(2, 3, 4))                     # (B, V)
    targets = (~batch.is_reference).to(err.dtype)
    return (err * targets).sum(1) / targets.sum(1)


def error_by_t(model: nn.Module, scenes: SceneTensors, setting: str, *, ts: list[float], items: int,
               seed: int, batch_size: int = 16) -> dict[str, list[float]]:
    """{mode: [mean velocity error at each t]} for the modes true / shuffled / dropped."""
    model.eval()
    true = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed))
    shuffled = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed,
                                 shuffle_references=True))
    out = {m: [] for m in MODES}
    for t in ts:
        for mode, batches, drop in (("true", true, False), ("shuffled", shuffled, False), ("dropped", true, True)):
            out[mode].append(float(torch.cat([velocity_error(model, b, t, drop=drop) for b in batches]).mean()))
    return out


def restart_from_truth(model: nn.Module, cfg: RunConfig, scenes: SceneTensors, setting: str, *,
                       starts: list[float], items: int, seed: int, batch_size: int = 16):
    """Sample the targets from z_t0 = (1 − t0)·x + t0·ε with the rest of the run's schedule.

    Each t0 in `starts` is moved to the nearest timestep of the configured schedule. Returns
    (the t0 used, {"psnr": [mean over items per t0], "ssim": [...]}, images (len(starts) + 1, N, C, H, W):
    row 0 each item's first target view, then that view restarted from each t0; N = items)."""
    model.eval()
    full = cfg.schedule.build()
    batches = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed))

    def first_target(per_batch: list[Tensor]) -> Tensor:
        """[(b, V, C, H, W) per batch] -> (N, C, H, W): each item's first target view."""
        return torch.cat([imgs[torch.arange(len(imgs)), (~b.is_reference).int().argmax(1)]
                          for b, imgs in zip(batches, per_batch)])

    used, scores, rows = [], {"psnr": [], "ssim": []}, [first_target([b.images for b in batches])]
    for t0 in starts:
        tail = full[int((full - t0).abs().argmin()):]
        if len(tail) < 2:
            raise ValueError(f"restart t0 = {t0} is the end of the schedule; choose t0 > {float(full[-1])}")
        start = float(tail[0])
        noised = [dataclasses.replace(b, noise=flowmatch.interpolate(b.images * 2 - 1, b.noise, start))
                  for b in batches]
        per_item, preds = score(model_method(model, cfg, schedule=tail), noised)
        used.append(start)
        for name in scores:
            scores[name].append(float(per_item[name].mean()))
        rows.append(first_target(preds))
    return used, scores, torch.stack(rows)
