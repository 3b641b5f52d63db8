"""Latent-space Kaleido (issue 12 §5) with a random-weight diffusers AutoencoderKL saved locally:
evaluation samples latents and decodes them (checked against diffusers' own decoder), and the whole
job (encode, train 20 steps, sample, decode, metrics) runs end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.cli import before_compose
from seqrender.experiments.config import validate_config
from seqrender.experiments.evaluate import eval_batches, model_method
from seqrender.experiments.latent import latent_intrinsics, latent_noise, load_vae
from seqrender.experiments.train import build_model

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency: pip install diffusers")

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, run_metrics  # noqa: E402

# 2× downsampling, 4 latent channels: 16×16 images -> 8×8 latents -> 4×4 tokens of patch 2
LATENT = ["model.in_channels=4", "model.patch_size=2", "vae.enabled=true"]


def save_random_vae(path: Path):
    """diffusers.AutoencoderKL with random weights, `save_pretrained` to `path` (float32, eval)."""
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                                  down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                  scaling_factor=0.5, shift_factor=0.1).eval()
    vae.save_pretrained(path, safe_serialization=True)
    return vae


def test_latent_noise_is_the_pixel_noise_unshuffled():
    """Latent channel c·f² + a·f + b at (i, j) is pixel noise channel c at (i·f + a, j·f + b)."""
    noise = torch.randn(2, 3, 3, 8, 12, dtype=torch.float64)
    got = latent_noise(noise, 2, 10)
    assert got.shape == (2, 3, 10, 4, 6)
    for channel in range(10):
        c, rest = divmod(channel, 4)
        a, b = divmod(rest, 2)
        assert torch.equal(got[:, :, channel], noise[:, :, c, a::2, b::2])
    with pytest.raises(ValueError, match="latent channels"):
        latent_noise(noise, 1, 4)


def test_latent_intrinsics_scale_to_the_latent_grid():
    k = torch.tensor([[40.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    want = torch.tensor([[5.0, 0.0, 2.0], [0.0, 3.75, 1.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(latent_intrinsics(k, 8), want)


def test_untrained_latent_sample_is_the_decoded_noise(tmp_path):
    """The untrained model's velocity is zero, so its targets are the decoded latent noise: compare
    with diffusers decoding the same latents (its own scaling and shift)."""
    reference = save_random_vae(tmp_path / "vae")
    cfg = _config(tmp_path, f"vae.path={tmp_path / 'vae'}")
    gen = torch.Generator().manual_seed(0)
    scenes = SceneTensors(torch.rand(3, 6, 3, 16, 16, generator=gen), torch.eye(3).repeat(3, 6, 1, 1) * 8,
                          torch.eye(4).repeat(3, 6, 1, 1))
    batch = next(eval_batches(scenes, "1->3", num_items=2, batch_size=2, seed=5))
    pred = model_method(build_model(cfg).eval(), cfg, load_vae(cfg, torch.device("cpu")))(batch)
    assert pred.shape == batch.images.shape
    z = latent_noise(batch.noise, 2, 4)[:, 1:]                                 # the 3 targets
    with torch.no_grad():
        decoded = reference.decode((z / 0.5 + 0.1).flatten(0, 1)).sample.unflatten(0, z.shape[:2])
    torch.testing.assert_close(pred[:, 1:], ((decoded + 1) / 2).clamp(0, 1), rtol=1e-4, atol=1e-5)


def test_latent_cache_matches_on_the_fly_encoding_and_resumes(tmp_path, monkeypatch):
    """`vae.cache`: batches equal the on-the-fly encoded ones; a deleted scene file is re-encoded
    alone; a cache of another setup is refused in one line."""
    from seqrender.experiments.failures import UserError
    from seqrender.experiments.latent import with_latents
    from seqrender.experiments.latent_cache import LatentCache
    from seqrender.experiments.tasks import task_for

    monkeypatch.setenv("SEQRENDER_DATA", str(tmp_path / "data"))
    save_random_vae(tmp_path / "vae")
    cache = tmp_path / "cache"
    fly = _config(tmp_path, f"vae.path={tmp_path / 'vae'}")
    cached = _config(tmp_path, f"vae.path={tmp_path / 'vae'}", f"vae.cache={cache}")
    task = task_for(fly)
    data = task.load(fly, "train")
    draw = task.batches(fly, data, fly.sampler.build())
    device = torch.device("cpu")
    a, b = with_latents(draw, fly, device, data)(3, range(2)), with_latents(draw, cached, device, data)(3, range(2))
    assert len(list(cache.glob("scene_*.safetensors"))) == len(data)
    torch.testing.assert_close(b.x, a.x, rtol=1e-4, atol=1e-5)
    for name in ("noise", "images", "intrinsics", "extrinsics", "is_reference", "t"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    kept = {p.name: p.stat().st_mtime_ns for p in cache.glob("scene_*.safetensors")}
    (cache / "scene_000002.safetensors").unlink()
    vae = load_vae(cached, device)
    calls = []
    monkeypatch.setattr(vae, "encode", lambda x, _e=vae.encode: calls.append(x.shape) or _e(x))
    key = json.loads((cache / "manifest.json").read_text())
    LatentCache(cache, data, vae, key, progress=False)
    assert len(calls) == 1 and (cache / "scene_000002.safetensors").is_file()
    assert all(p.stat().st_mtime_ns == kept[p.name] for p in cache.glob("scene_*.safetensors")
               if p.name != "scene_000002.safetensors")
    with pytest.raises(UserError, match=r"^vae.cache: .* holds latents of another setup \(scenes differs\)"):
        LatentCache(cache, data, vae, {**key, "scenes": 99}, progress=False)


def _config(tmp_path, *overrides):
    before_compose([])
    with initialize_config_dir(config_dir=str(REPO / "experiments" / "configs"), version_base="1.3"):
        raw = compose(config_name="config", overrides=[*TINY, *LATENT, *overrides])
    return validate_config(OmegaConf.to_container(raw, resolve=True))


def test_latent_run_trains_samples_decodes_and_scores(tmp_path):
    save_random_vae(tmp_path / "vae")
    run_dir = tmp_path / "run"
    _, metrics = run_metrics(*TINY, *LATENT, f"vae.path={tmp_path / 'vae'}", "trainer.steps=20",
                             "trainer.checkpoint_every=20", run_dir=run_dir, data_root=tmp_path / "data")
    assert metrics["train"]["steps"] == 20 and metrics["train"]["status"] == "finished"
    for setting in ("1->3", "3->1"):
        rows = metrics["eval"][setting]
        assert {"trained", "untrained", "mean_reference"} <= set(rows)
        assert all(0 < rows[m]["psnr"] < 100 and 0 <= rows[m]["items"] for m in rows)
    assert (run_dir / "samples.png").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["eval"] == metrics["eval"]
