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
`same_pose_check` asks whether the model renders from its references at all: every target is put at
its item's first reference (image, intrinsics and pose), so nothing in it is unseen and a model that
carries the references' content to the target's camera reproduces that reference. A score near the
true targets' says the references fix colours and layout but their detail does not reach the target.
`attention_mass` asks where the target tokens look: in each block's temporal attention, the share of
their softmax mass on the references' tokens, on their own frame, on the other targets and on the
registers, by noise level.
Run: `python experiments/diagnose.py RUN_DIR [--items N] [--restart] [--same-pose] [--attention]`.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from seqrender import flowmatch
from seqrender.attention.core import append_registers
from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.config import RunConfig
from seqrender.experiments.evaluate import EvalBatch, eval_batches, model_method, score

MODES = ("true", "shuffled", "dropped")
PARTS = ("references", "own_frame", "other_targets", "registers")   # where attention_mass splits it
SPREAD = "keys_attended"                                           # ... and exp(entropy) beside them


def noised_targets(batch: EvalBatch, t: float) -> tuple[Tensor, Tensor, Tensor]:
    """x (B, V, C, H, W) in [−1, 1], z: the references clean and the targets at (1 − t)·x + t·ε, and t (B,)."""
    x = batch.images * 2 - 1
    tt = torch.full((x.shape[0],), t)
    return x, torch.where(batch.is_reference[..., None, None, None], x, flowmatch.interpolate(x, batch.noise, tt)), tt


def velocity_error(model: nn.Module, batch: EvalBatch, t: float, *, drop: bool) -> Tensor:
    """(B,) mean squared velocity error over each item's target pixels at timestep t."""
    x, z, tt = noised_targets(batch, t)
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


def first_view(batches: list[EvalBatch], per_batch: list[Tensor], *, reference: bool = False) -> Tensor:
    """[(b, V, C, H, W) per batch] -> (N, C, H, W): each item's first target view (or first reference)."""
    return torch.cat([imgs[torch.arange(len(imgs)), (b.is_reference == reference).int().argmax(1)]
                      for b, imgs in zip(batches, per_batch)])


def restart_from_truth(model: nn.Module, cfg: RunConfig, scenes: SceneTensors, setting: str, *,
                       starts: list[float], items: int, seed: int, batch_size: int = 16):
    """Sample the targets from z_t0 = (1 − t0)·x + t0·ε with the rest of the run's schedule.

    Each t0 in `starts` is moved to the nearest timestep of the configured schedule. Returns
    (the t0 used, {"psnr": [mean over items per t0], "ssim": [...]}, images (len(starts) + 1, N, C, H, W):
    row 0 each item's first target view, then that view restarted from each t0; N = items)."""
    model.eval()
    full = cfg.schedule.build()
    batches = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed))
    used, scores, rows = [], {"psnr": [], "ssim": []}, [first_view(batches, [b.images for b in batches])]
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
        rows.append(first_view(batches, preds))
    return used, scores, torch.stack(rows)


def at_first_reference(batch: EvalBatch) -> EvalBatch:
    """The batch with every target view replaced by its item's first reference: image, intrinsics and
    pose (references, noise and the reference mask unchanged). Needs posed views (no clip times)."""
    if batch.times is not None:
        raise ValueError("the same-pose check needs posed views; this dataset positions its frames by time")
    first = batch.is_reference.int().argmax(1)                                   # (B,)
    rows = torch.arange(len(first))

    def put(x: Tensor) -> Tensor:
        """(B, V, ...) -> same, target views set to the first reference's."""
        is_target = (~batch.is_reference).view(*batch.is_reference.shape, *[1] * (x.dim() - 2))
        return torch.where(is_target, x[rows, first][:, None], x)

    return dataclasses.replace(batch, images=put(batch.images), intrinsics=put(batch.intrinsics),
                               extrinsics=put(batch.extrinsics))


def same_pose_check(model: nn.Module, cfg: RunConfig, scenes: SceneTensors, setting: str, *, items: int,
                    seed: int, batch_size: int = 16):
    """The run's sampler on the held-out items as they are ("true") and with every target at its
    first reference ("same_pose", see `at_first_reference`).

    Returns ({"true": {"psnr": mean over items, "ssim": ...}, "same_pose": {...}}, images (2, N, C, H, W):
    row 0 each item's first reference, row 1 its first target sampled at that reference's pose)."""
    model.eval()
    method = model_method(model, cfg)
    batches = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed))
    moved = [at_first_reference(b) for b in batches]
    out = {}
    for name, bs in (("true", batches), ("same_pose", moved)):
        per_item, preds = score(method, bs)
        out[name] = {k: float(v.mean()) for k, v in per_item.items()}

    references = first_view(moved, [b.images for b in moved], reference=True)
    samples = first_view(moved, preds)                                  # preds: the same-pose items'
    return out, torch.stack([references, samples])


class _RecordQK:
    """A positional hook that passes through `inner` and appends each call's transformed (q, k) to `calls`."""

    def __init__(self, inner, calls: list):
        self.inner, self.calls = inner, calls

    def transform_qkv(self, q: Tensor, k: Tensor, v: Tensor):
        q, k, v = self.inner.transform_qkv(q, k, v)
        self.calls.append((q, k))
        return q, k, v

    def transform_out(self, o: Tensor) -> Tensor:
        return self.inner.transform_out(o)


@contextmanager
def recording_temporal_qk(model: nn.Module):
    """Inside the `with`, `model`'s temporal attention records (q, k) after the positional transform,
    one call per block in order: yields the list of (q (B', Hq, N, d), k (B', Hkv, N, d)) per forward."""
    calls: list = []
    plain = model.transforms

    def transforms(*args, **kwargs):
        spatial, temporal = plain(*args, **kwargs)
        return spatial, _RecordQK(temporal, calls)

    model.transforms = transforms
    try:
        yield calls
    finally:
        del model.transforms


def mass_by_part(q: Tensor, k: Tensor, registers: Tensor, frame: Tensor, is_reference: Tensor) -> Tensor:
    """Where each target query's softmax(q·kᵀ/√d) over [sequence | registers] goes, and how spread it is.

    q (B, Hq, N, d), k (B, Hkv, N, d), registers (R, Hkv, d) keys; frame (N,) the frame of each
    token; is_reference (B, V). Returns (B, 5): per item, the mean over target queries and heads of
    the mass on the PARTS, then the number of keys attended, exp(entropy) (1: one key; N + R: uniform)."""
    keys = append_registers(k, k, registers, registers, None)[0]                     # (B, Hkv, N + R, d)
    keys = keys.repeat_interleave(q.shape[1] // k.shape[1], dim=1)                   # GQA: head h reads h // group
    probs = torch.softmax(q @ keys.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)  # (B, Hq, N, N + R)
    n = q.shape[2]
    key_ref = is_reference[:, frame][:, None, None, :]                               # (B, 1, 1, N)
    same = (frame[:, None] == frame[None, :])                                        # (N, N)
    seq = probs[..., :n]
    parts = [(seq * key_ref).sum(-1), (seq * same).sum(-1), (seq * (~key_ref & ~same)).sum(-1),
             probs[..., n:].sum(-1), torch.special.entr(probs).sum(-1).exp()]       # each (B, Hq, N)
    per_query = torch.stack(parts, dim=-1).mean(1)                                   # (B, N, 5)
    is_target = (~is_reference[:, frame]).to(per_query.dtype)                        # (B, N)
    return (per_query * is_target[..., None]).sum(1) / is_target.sum(1, keepdim=True)


def attention_mass(model: nn.Module, scenes: SceneTensors, setting: str, *, ts: list[float], items: int,
                   seed: int, batch_size: int = 16) -> dict[str, list[list[float]]]:
    """{part: [[mean mass per block] per t]} of the target tokens' temporal attention, and the same for
    SPREAD (see `mass_by_part`), on the held-out items of `setting` with their true references.
    Needs one temporal window per frame (`model.window` ≥ the token grid)."""
    model.eval()
    batches = list(eval_batches(scenes, setting, num_items=items, batch_size=batch_size, seed=seed))
    out = {part: [] for part in (*PARTS, SPREAD)}
    for t in ts:
        per_batch = []
        for batch in batches:
            x, z, tt = noised_targets(batch, t)
            with torch.no_grad(), recording_temporal_qk(model) as calls:
                model(z, tt, is_reference=batch.is_reference, intrinsics=batch.intrinsics,
                      extrinsics=batch.extrinsics)
                views = x.shape[1]
                if calls[0][0].shape[0] != x.shape[0]:
                    raise ValueError("attention_mass needs the temporal window to cover the whole frame "
                                     f"(model.window >= the token grid); got {calls[0][0].shape[0]} windows "
                                     f"for {x.shape[0]} items")
                frame = torch.arange(views).repeat_interleave(calls[0][0].shape[2] // views)
                per_batch.append(torch.stack([
                    mass_by_part(q, k, block.temporal.attn.registers()[0], frame, batch.is_reference)
                    for (q, k), block in zip(calls, model.blocks)], dim=1))          # (B, blocks, 5)
        mean = torch.cat(per_batch).mean(0)                                          # (blocks, 5)
        for i, part in enumerate((*PARTS, SPREAD)):
            out[part].append(mean[:, i].tolist())
    return out
