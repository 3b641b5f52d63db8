"""Masked-autoregressive generation against a direct use of the flow-matching sampler: one chunk that
holds every target equals all-at-once sampling exactly (same noise), and chunk-by-chunk generation
equals a hand-written autoregressive loop with brute-force nearest-camera reference selection."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from seqrender import flowmatch
from seqrender.experiments.config import validate_config
from seqrender.experiments.configstore import default_node, prepare_registry
from seqrender.experiments.data import look_at_w2c
from seqrender.experiments.evaluate import model_method
from seqrender.experiments.render.generate import Views, generate
from seqrender.experiments.train import build_model
from seqrender.posenc.conventions import intrinsics_from_fov

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "config.yaml"
STEPS, GUIDANCE, SIZE = 3, 1.5, 16
MODEL = {"in_channels": 3, "patch_size": 4, "hidden": 32, "heads": 2, "kv_heads": 1, "layers": 1, "window": 2}


@pytest.fixture(scope="module")
def setup():
    """A random tiny Kaleido and a run config sampling with 3 linear-quadratic steps and CFG 1.5."""
    prepare_registry()
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG))
    raw = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    names = {"model": "kaleido", "posenc": "gta", "sampler": "mode", "schedule": "linear_quadratic",
             "solver": "euler", "dataset": "embedded"}
    raw |= {kind: default_node(kind, name) for kind, name in names.items()}
    raw["model"] |= MODEL
    raw["schedule"]["num_steps"] = STEPS
    raw["eval"]["guidance_scale"] = GUIDANCE
    cfg = validate_config(raw)
    return cfg, build_model(cfg).eval()


def cameras(count: int, start: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on a circle of radius 3.5 around the origin, 30° apart from azimuth `start`."""
    azimuth = start + torch.arange(count) * math.radians(30)
    eye = torch.stack([3.5 * torch.cos(azimuth), 3.5 * torch.sin(azimuth), torch.full_like(azimuth, 1.0)], -1)
    extrinsics = look_at_w2c(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]))
    return intrinsics_from_fov(0.69, width=SIZE, height=SIZE).expand(count, 3, 3).clone(), extrinsics


def direct_sample(model, refs: Views, intrinsics, extrinsics, noise) -> torch.Tensor:
    """All targets in one flowmatch.sample call, references held clean. -> (T, 3, H, W) in [0, 1]."""
    n = len(refs)
    clean = torch.cat([refs.images * 2 - 1, torch.zeros_like(noise)])[None]
    is_ref = (torch.arange(n + len(noise)) < n)[None]
    k = torch.cat([refs.intrinsics, intrinsics])[None]
    e = torch.cat([refs.extrinsics, extrinsics])[None]

    def velocity(z, t, *, drop_condition):
        rep = z.shape[0]
        return model(z, t, is_reference=is_ref.repeat(rep, 1), intrinsics=k.repeat(rep, 1, 1, 1),
                     extrinsics=e.repeat(rep, 1, 1, 1), drop_condition=drop_condition)

    out = flowmatch.sample(velocity, torch.cat([torch.zeros_like(refs.images), noise])[None],
                           flowmatch.linear_quadratic_schedule(STEPS), solver="euler", guidance_scale=GUIDANCE,
                           clean=clean, keep_mask=is_ref[..., None, None, None])
    return ((out[0, n:] + 1) / 2).clamp(0, 1)


def inputs(count: int) -> Views:
    k, e = cameras(count)
    return Views(torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)), k, e)


def test_one_chunk_holding_every_target_equals_all_at_once(setup):
    cfg, model = setup
    refs = inputs(2)
    k, e = cameras(5, start=0.3)
    noise = torch.randn(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    expected = direct_sample(model, refs, k, e, noise)
    # budget 4 < 2 + 5 views forces the chunked path; the chunk holds all 5 targets
    chunked = generate(model_method(model, cfg), refs, k, e, noise, budget=4, chunk_size=5, max_references=2)
    assert torch.equal(chunked, expected)
    fits = generate(model_method(model, cfg), refs, k, e, noise, budget=7, chunk_size=1, max_references=1)
    assert torch.equal(fits, expected)


def test_chunks_follow_the_autoregressive_loop_with_nearest_references(setup):
    cfg, model = setup
    refs = inputs(3)
    k, e = cameras(4, start=math.radians(95))
    noise = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    got = generate(model_method(model, cfg), refs, k, e, noise, budget=4, chunk_size=2, max_references=2)
    known = Views(refs.images.clone(), refs.intrinsics.clone(), refs.extrinsics.clone())
    expected = []
    for start in (0, 2):
        # brute force in float64 numpy: the 2 known cameras nearest any camera of the chunk, in known order
        centre = lambda m: -m[:3, :3].T @ m[:3, 3]  # noqa: E731
        known_c = [centre(m) for m in known.extrinsics.double().numpy()]
        chunk_c = [centre(m) for m in e[start:start + 2].double().numpy()]
        dist = [min(np.linalg.norm(a - b) for b in chunk_c) for a in known_c]
        pick = torch.tensor(sorted(sorted(range(len(dist)), key=lambda i: (dist[i], i))[:2]))
        images = direct_sample(model, Views(known.images[pick], known.intrinsics[pick], known.extrinsics[pick]),
                               k[start:start + 2], e[start:start + 2], noise[start:start + 2])
        known = Views(torch.cat([known.images, images]), torch.cat([known.intrinsics, k[start:start + 2]]),
                      torch.cat([known.extrinsics, e[start:start + 2]]))
        expected.append(images)
    assert torch.equal(got, torch.cat(expected))


def test_render_guidance_defaults_to_the_checkpoint_runs_own(setup):
    """render.guidance_scale: null samples with the scale the checkpoint's run evaluated with (its
    .hydra config), an explicit value overrides it; the command's schedule is used either way."""
    from seqrender.experiments.render.command import sampling_config
    from seqrender.experiments.render.config import RenderConfig

    cfg, _ = setup
    trained = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"guidance_scale": 2.75})})
    fields = dict(checkpoint="x", scene="heldout:0", split="train", references=1, trajectory="orbit", views=4,
                  spiral_amplitude_deg=10.0, view_budget=0, chunk_size=1, max_references=3, seed=0, fps=8,
                  gif=False, mp4=False, progress=False, out="")
    assert sampling_config(cfg, trained, RenderConfig(**fields)).eval.guidance_scale == 2.75
    assert sampling_config(cfg, None, RenderConfig(**fields)).eval.guidance_scale == GUIDANCE
    assert sampling_config(cfg, trained, RenderConfig(**fields, guidance_scale=1.0)).eval.guidance_scale == 1.0
