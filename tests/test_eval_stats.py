"""Evaluation statistics and item construction: bootstrap intervals against the normal-theory
interval, paired differences, shuffled references and orbit view choice."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrender.experiments import stats
from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.evaluate import eval_batches, evaluate, score, summarise
from seqrender.experiments.orbit import generate_orbits, orbit_views

sys.path.insert(0, str(Path(__file__).parent))  # test_presets.run_config composes the real configs


def test_bootstrap_interval_matches_normal_theory():
    """For n = 400 iid values the percentile bootstrap interval of the mean is within a few percent
    of mean ± 1.96·s/√n (the central limit theorem's interval)."""
    values = np.random.default_rng(0).gamma(2.0, 1.5, size=400)
    lo, hi = stats.interval(values, samples=4000, seed=1)
    half = 1.959964 * values.std(ddof=1) / math.sqrt(len(values))
    assert lo == pytest.approx(values.mean() - half, rel=0.02)
    assert hi == pytest.approx(values.mean() + half, rel=0.02)


def test_summary_is_strict_json_for_non_finite_values():
    s = stats.summary(np.array([1.0, float("nan")]))
    assert s["mean"] is None and s["ci95"] is None and "non-finite" in s["invalid"]


def test_paired_difference_is_tighter_than_unpaired():
    """Two methods whose per-item scores share a large item effect: the interval of the paired
    difference excludes 0 although the two marginal intervals overlap."""
    rng = np.random.default_rng(3)
    item = rng.normal(15, 3, size=96)
    per_item = {"trained": {"psnr": item + 0.5, "ssim": item / 30},
                "baseline": {"psnr": item + rng.normal(0, 0.2, 96), "ssim": item / 30}}
    out = summarise(per_item, samples=2000, seed=0)
    a, b = out["trained"]["psnr_ci95"], out["baseline"]["psnr_ci95"]
    assert a[0] < b[1] and b[0] < a[1]                                  # marginal intervals overlap
    diff = out["baseline"]["psnr_minus_trained"]
    assert diff["ci95"][1] < 0                                          # ... the paired one does not
    assert diff["mean"] == pytest.approx(float(np.mean(per_item["baseline"]["psnr"] - item - 0.5)))


def _scenes(num: int = 6, views: int = 16, size: int = 8) -> SceneTensors:
    """Scenes whose pixels encode (scene, view), and poses whose translation encodes them too."""
    images = torch.zeros(num, views, 3, size, size)
    extrinsics = torch.eye(4).repeat(num, views, 1, 1)
    for s in range(num):
        for v in range(views):
            images[s, v, 0], images[s, v, 1] = s / num, v / views
            extrinsics[s, v, :3, 3] = torch.tensor([s, v, 1.0])
    return SceneTensors(images, torch.eye(3).repeat(num, views, 1, 1), extrinsics)


def test_shuffled_references_come_from_another_scene_and_keep_targets():
    scenes = _scenes()
    plain = list(eval_batches(scenes, "3->1", num_items=12, batch_size=5, seed=7))
    mixed = list(eval_batches(scenes, "3->1", num_items=12, batch_size=5, seed=7, shuffle_references=True))
    for p, m in zip(plain, mixed):
        refs = p.is_reference[0]
        assert torch.equal(p.images[:, ~refs], m.images[:, ~refs])          # targets unchanged
        assert torch.equal(p.extrinsics[:, ~refs], m.extrinsics[:, ~refs])  # ... and their poses
        assert torch.equal(p.noise, m.noise)
        own_scene = p.extrinsics[:, ~refs, 0, 3][:, 0]
        donor_scene = m.extrinsics[:, refs, 0, 3]                           # (B, 3)
        assert (donor_scene != own_scene[:, None]).all()
        assert (donor_scene == donor_scene[:, :1]).all()                    # one consistent donor scene
        # the images of the references are the donor scene's (pixels encode the scene)
        assert torch.allclose(m.images[:, refs, 0, 0, 0] * 6, donor_scene)


@pytest.mark.parametrize("shuffled_settings, expected", [(None, {"1->3", "3->1"}), (["3->1"], {"3->1"}), ([], set())])
def test_shuffled_row_only_in_the_chosen_settings(shuffled_settings, expected):
    """`eval.shuffled_settings` (None: every setting) picks where the shuffled_references row is
    scored; the other rows are there in every setting."""
    from test_presets import run_config
    from seqrender.experiments.train import build_model

    cfg = run_config("model=kaleido", "posenc=gta", "model.layers=1", "model.hidden=32", "model.heads=2",
                     "model.kv_heads=1", "model.window=2", "model.pixel_head=0", "dataset.resolution=8",
                     "eval.num_items=2", "eval.batch_size=2", "schedule.num_steps=2",
                     f"eval.shuffled_settings={'null' if shuffled_settings is None else shuffled_settings}")
    scenes = _scenes()
    scenes.images[:] = torch.rand(scenes.images.shape)
    scenes.intrinsics[..., :2, 2] = 4.0                                    # principal point of 8 x 8 images
    results, _ = evaluate(cfg, scenes, {"trained": build_model(cfg), "untrained": build_model(cfg)}, progress=False)
    for setting, rows in results.items():
        extra = {"shuffled_references"} if setting in expected else set()
        assert set(rows) == {"trained", "trained_1step", "untrained", "mean_reference", "nearest_reference"} | extra


def test_score_averages_views_within_items():
    """Item scores are the mean over their own target views, so an item with 3 targets counts once."""
    scenes = _scenes()
    batch = next(eval_batches(scenes, "1->3", num_items=2, batch_size=2, seed=0))
    pred = (batch.images + 0.01).clamp(0, 1)                                # 40 dB where untouched
    pred[1, 2] = batch.images[1, 2] + 0.1                                   # 20 dB on one view of item 1
    per_item, _ = score(lambda b: pred, [batch])
    assert per_item["psnr"].shape == (2,)
    view_psnr = [-10 * math.log10(float(((pred[1, v] - batch.images[1, v]) ** 2).mean())) for v in (1, 2, 3)]
    assert per_item["psnr"][1] == pytest.approx(sum(view_psnr) / 3, abs=1e-4)


def test_orbit_views_are_even_and_disjoint():
    targets, refs = orbit_views(16, targets=8, references=3)
    assert targets == [0, 2, 4, 6, 8, 10, 12, 14]
    assert not set(targets) & set(refs) and len(set(refs)) == 3
    with pytest.raises(ValueError, match="needs that many views"):
        orbit_views(8, targets=8, references=1)


def test_orbit_chunks_cover_every_target_with_its_own_prediction():
    """A predictor that copies each target's ground truth returns the ground-truth orbit, whatever
    the chunking (3 refs -> chunks of 1; 1 ref -> chunks of 3, the last one padded)."""
    scenes = _scenes()
    copy_truth = lambda b: b.images
    for refs in (1, 3):
        orbits = generate_orbits(copy_truth, scenes, [0, 4], references=refs, views=4)
        for o in orbits:
            assert torch.equal(o.generated, o.truth) and o.generated.shape[0] == 8
            assert o.references.shape[0] == refs


def test_velocity_error_modes_of_a_reference_copying_model():
    """A model predicting the velocity ε − x̂ with x̂ = its first reference: its error is 0 where the
    target equals that reference, and the 'dropped' mode (zeroed reference content) and a blind model
    give the closed form mean((ε − x)²)."""
    from seqrender.experiments.diagnose import error_by_t

    class CopyFirstReference(torch.nn.Module):
        def forward(self, z, t, *, is_reference, intrinsics, extrinsics, drop_condition):
            ref = z[:, :1] * (~drop_condition).to(z.dtype)[:, None, None, None, None]  # (B, 1, C, H, W)
            tt = t[:, None, None, None, None]
            # z_t = (1 − t)x + tε  ⇒  ε − x̂ = (z_t − x̂)/t with x̂ the reference
            return (z - ref) / tt

    scenes = _scenes(num=4, views=6)
    same = SceneTensors(scenes.images[:, :1].expand_as(scenes.images).clone(), scenes.intrinsics, scenes.extrinsics)
    errors = error_by_t(CopyFirstReference(), same, "1->3", ts=[0.5, 1.0], items=4, seed=0)
    assert max(errors["true"]) < 1e-10                          # targets equal their reference
    assert min(errors["shuffled"]) > 1e-3                       # another scene's reference is wrong
    x = same.images[:, 0] * 2 - 1
    # dropped: x̂ = 0, so v̂ − (ε − x) = ((1 − t)x + tε)/t − ε + x = x/t
    for t, err in zip([0.5, 1.0], errors["dropped"]):
        assert err == pytest.approx(float((x / t).pow(2).mean()), rel=1e-5)


def _kaleido_config(*overrides: str):
    """The composed, validated main-job config with a 6-step schedule and CFG 2 (and `overrides`)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seqrender.experiments.cli import before_compose
    from seqrender.experiments.config import validate_config

    before_compose([])
    configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return validate_config(OmegaConf.to_container(compose(config_name="config", overrides=[
            "model=kaleido", "schedule.num_steps=6", "eval.guidance_scale=2.0", *overrides]), resolve=True))


def test_restart_from_truth_starts_on_the_noised_truth_at_a_step_of_the_schedule():
    """A model whose velocity is 0 leaves the start state as it is: the restarted targets are
    (1 − t0)·x + t0·ε mapped to [0, 1], with t0 the schedule's nearest step."""
    from seqrender.experiments.diagnose import restart_from_truth

    cfg = _kaleido_config()

    class StandStill(torch.nn.Module):
        def forward(self, z, t, **kw):
            return torch.zeros_like(z)

    scenes = _scenes(num=4, views=6)
    scenes = SceneTensors(torch.rand(scenes.images.shape, generator=torch.Generator().manual_seed(0)),
                          scenes.intrinsics, scenes.extrinsics)
    schedule = cfg.schedule.build()
    used, scores, images = restart_from_truth(StandStill(), cfg, scenes, "3->1", starts=[0.3, 0.9], items=4, seed=0)
    assert used == [float(schedule[(schedule - t).abs().argmin()]) for t in (0.3, 0.9)]
    (batch,) = list(eval_batches(scenes, "3->1", num_items=4, batch_size=16, seed=0))
    target = (~batch.is_reference).int().argmax(1)
    x, noise = batch.images[torch.arange(4), target], batch.noise[torch.arange(4), target]
    assert torch.equal(images[0], x)
    for row, t0, psnr in zip(images[1:], used, scores["psnr"]):
        expected = (((1 - t0) * (2 * x.double() - 1) + t0 * noise.double() + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(row.double(), expected, rtol=0, atol=1e-6)
        mse = (expected - x.double()).pow(2).mean(dim=(1, 2, 3))
        assert psnr == pytest.approx(float((-10 * torch.log10(mse)).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="end of the schedule"):
        restart_from_truth(StandStill(), cfg, scenes, "3->1", starts=[0.0], items=4, seed=0)


@pytest.mark.parametrize("setting", ["1->3", "3->1"])
def test_at_first_reference_puts_every_target_on_its_first_reference(setting):
    """Targets take the first reference's image, intrinsics and pose; references, mask and noise stay."""
    from seqrender.experiments.diagnose import at_first_reference

    scenes = _scenes()
    scenes = SceneTensors(scenes.images, torch.rand(scenes.intrinsics.shape, generator=torch.Generator().manual_seed(1)),
                          scenes.extrinsics)
    for batch in eval_batches(scenes, setting, num_items=7, batch_size=4, seed=3):
        moved = at_first_reference(batch)
        assert torch.equal(moved.is_reference, batch.is_reference) and torch.equal(moved.noise, batch.noise)
        for b in range(len(batch.images)):
            first = int(batch.is_reference[b].int().argmax())
            for v in range(batch.images.shape[1]):
                source = v if batch.is_reference[b, v] else first
                for field in ("images", "intrinsics", "extrinsics"):
                    assert torch.equal(getattr(moved, field)[b, v], getattr(batch, field)[b, source]), (field, b, v)


def test_same_pose_check_scores_a_model_that_copies_the_reference_at_the_same_pose():
    """A model whose velocity leads each target to the reference with the same pose (and to 0 where
    none has it) reproduces that reference in the same-pose check (SSIM 1), and not on the true targets."""
    from seqrender.experiments.diagnose import same_pose_check

    class CopySamePose(torch.nn.Module):
        def forward(self, z, t, *, is_reference, extrinsics, **kw):
            same = (extrinsics[:, :, None] - extrinsics[:, None]).abs().amax((-1, -2)) < 1e-6   # (B, V, V)
            use = (same & is_reference[:, None]).to(z.dtype)                                    # target v <- ref r
            use = use / use.sum(-1, keepdim=True).clamp_min(1)
            x_hat = torch.einsum("bvr,brchw->bvchw", use, z)
            return (z - x_hat) / t[:, None, None, None, None]          # z_t = (1 − t)x + tε ⇒ ε − x = (z_t − x)/t

    scenes = _scenes(num=4, views=6)
    scenes = SceneTensors(torch.rand(scenes.images.shape, generator=torch.Generator().manual_seed(0)),
                          scenes.intrinsics, scenes.extrinsics)
    scores, images = same_pose_check(CopySamePose(), _kaleido_config(), scenes, "3->1", items=5, seed=0)
    assert scores["same_pose"]["ssim"] > 0.9999 and scores["same_pose"]["psnr"] > 60
    assert scores["true"]["ssim"] < 0.5
    assert images.shape == (2, 5, 3, 8, 8)
    torch.testing.assert_close(images[1], images[0], rtol=0, atol=1e-5)


def test_mass_by_part_equals_the_attention_weights_of_sdpa():
    """The parts of `mass_by_part` (and its exp-entropy) equal sums of torch SDPA's own attention weights (read off as its
    output for identity values), in float64, with GQA and registers."""
    from seqrender.attention.core import append_registers
    from seqrender.experiments.diagnose import mass_by_part

    g = torch.Generator().manual_seed(0)
    b, hq, hkv, views, per, d, r = 3, 4, 2, 4, 5, 8, 2
    n = views * per
    q, k = torch.randn(b, hq, n, d, generator=g, dtype=torch.float64), torch.randn(b, hkv, n, d, generator=g, dtype=torch.float64)
    registers = torch.randn(r, hkv, d, generator=g, dtype=torch.float64)
    is_reference = torch.tensor([[True, False, False, False], [True, True, True, False], [False, True, False, True]])
    frame = torch.arange(views).repeat_interleave(per)
    eye = torch.eye(n + r, dtype=torch.float64).expand(b, hkv, n + r, n + r)
    keys = append_registers(k, k, registers, registers, None)[0]
    weights = torch.nn.functional.scaled_dot_product_attention(q, keys, eye, enable_gqa=True)   # (B, Hq, N, N + R)
    got = mass_by_part(q, k, registers, frame, is_reference)
    for i in range(b):
        targets = [j for j in range(n) if not is_reference[i, frame[j]]]
        cols = {"references": [j for j in range(n) if is_reference[i, frame[j]]], "registers": list(range(n, n + r))}
        expected = []
        for qi in targets:
            w = weights[i, :, qi]                                                                # (Hq, N + R)
            own = [j for j in range(n) if frame[j] == frame[qi]]
            other = [j for j in range(n) if j not in own and not is_reference[i, frame[j]]]
            spread = float(torch.exp(-(w * w.log()).sum(-1)).mean())                            # exp(entropy)
            expected.append([float(w[:, c].sum(-1).mean()) for c in (cols["references"], own, other, cols["registers"])]
                            + [spread])
        torch.testing.assert_close(got[i], torch.tensor(expected, dtype=torch.float64).mean(0))
    torch.testing.assert_close(got[:, :4].sum(-1), torch.ones(b, dtype=torch.float64))


def test_attention_mass_of_a_kaleido_with_blind_queries_is_uniform_and_leaves_the_output_alone():
    """With zero query weights every key scores 0, so the mass is uniform over the window's tokens and
    registers: references get (reference tokens)/(tokens + registers) and every key is attended.
    Recording changes no output."""
    from seqrender.experiments.diagnose import attention_mass, recording_temporal_qk
    from seqrender.experiments.train import build_model

    cfg = _kaleido_config()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    scenes = _scenes(num=4, views=6, size=32)
    (batch,) = list(eval_batches(scenes, "3->1", num_items=3, batch_size=16, seed=0))
    args = (batch.images * 2 - 1, torch.full((3,), 0.5))
    kw = dict(is_reference=batch.is_reference, intrinsics=batch.intrinsics, extrinsics=batch.extrinsics)
    with torch.no_grad():
        plain = model(*args, **kw)
        with recording_temporal_qk(model) as calls:
            recorded = model(*args, **kw)
    assert torch.equal(plain, recorded) and len(calls) == len(model.blocks)
    assert "transforms" not in vars(model)                              # the patch is undone
    for block in model.blocks:
        torch.nn.init.zeros_(block.temporal.attn.to_q.weight)
    masses = attention_mass(model, scenes, "3->1", ts=[0.3, 0.9], items=3, seed=0)
    tokens, registers = 4 * 8 * 8, model.blocks[0].temporal.attn.register_k.shape[0]
    expected = {"references": 3 * 64 / (tokens + registers), "own_frame": 64 / (tokens + registers),
                "other_targets": 0.0, "registers": registers / (tokens + registers), "keys_attended": tokens + registers}
    for part, value in expected.items():
        torch.testing.assert_close(torch.tensor(masses[part]), torch.full((2, len(model.blocks)), float(value)))
    windowed = build_model(_kaleido_config("model.window=4")).eval()    # 4 windows per frame: refused
    with pytest.raises(ValueError, match="cover the whole frame"):
        attention_mass(windowed, scenes, "3->1", ts=[0.5], items=3, seed=0)


def test_sampling_runs_on_the_models_device_and_scores_on_the_batches(monkeypatch):
    """A model on a GPU samples there (the first run on a GPU crashed: held-out batches stayed on
    the CPU). Here both devices are the CPU, so the test watches the move: the batch goes through
    `to_device(batch, the model's device)` once per prediction, and the prediction comes back on
    the batch's device, equal to the one sampled without moving."""
    from seqrender.experiments import batching
    from seqrender.experiments import evaluate as ev

    class Halve(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, z, t, **kw):
            return self.scale * z

    cfg, model = _kaleido_config(), Halve()
    (batch,) = list(eval_batches(_scenes(num=4, views=6), "3->1", num_items=4, batch_size=16, seed=0))
    with torch.no_grad():
        unmoved = ev.sampling_method(cfg, lambda b, x: lambda z, t, drop_condition: model(z, t))(batch)
    moves = []

    def recording(batch, device):
        moves.append(device)
        return batching.to_device(batch, device)

    monkeypatch.setattr(ev, "to_device", recording)
    pred = ev.model_method(model, cfg)(batch)
    assert moves == [torch.device("cpu")] and ev.device_of(model) == torch.device("cpu")
    assert pred.device == batch.images.device
    torch.testing.assert_close(pred, unmoved)
    assert ev.device_of(lambda z, t: z) is None  # a plain velocity function: nothing is moved
