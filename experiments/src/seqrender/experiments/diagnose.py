"""How much a trained Kaleido uses its references, by noise level.

For held-out items of one setting and a grid of timesteps t, the targets are put on the path
z_t = (1 − t)·x + t·ε and the model's velocity error ‖v̂ − (ε − x)‖² (mean over target pixels) is
measured three ways: with the true references, with the references of another held-out scene
(`eval_batches(..., shuffle_references=True)`), and with the references' content dropped (the
unconditional branch of classifier-free guidance). Where the three agree the model ignores its
references at that noise level. Run: `python experiments/diagnose.py RUN_DIR [--items N]`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqrender import flowmatch
from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.evaluate import EvalBatch, eval_batches

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
