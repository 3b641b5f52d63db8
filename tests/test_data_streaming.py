"""Streaming training data (issue 12 §4): samples read from disk by a DataLoader with workers must be
exactly the in-memory batches (both are the pure function of (seed, step, sample index) that resume
and DDP exactness rest on), at V = 12 with random view masking too; clips are positioned by θ_t."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from seqrender.experiments.batching import ViewSampling, make_train_batch
from seqrender.experiments.data.nerfstudio import NerfstudioConfig, nerfstudio_dataset
from seqrender.experiments.data.scene_dataset import DataError
from seqrender.experiments.data.video import VideoConfig, video_dataset
from seqrender.experiments.streaming import StreamedSamples, StreamingDraw
from seqrender.experiments.tasks.kaleido_views import stack_scenes
from seqrender.flowmatch.timesteps import ModeSampler

sys.path.insert(0, str(Path(__file__).parent))
from _data_formats import WRITERS, rendered_scenes  # noqa: E402
from _runs import TINY, run  # noqa: E402

FIELDS = ("x", "noise", "t", "is_reference", "loss_mask", "frame_mask", "drop_condition", "intrinsics", "extrinsics")


@pytest.fixture(scope="module")
def scenes_on_disk(tmp_path_factory):
    """Three rendered scenes of 13 views (16×24) in the nerfstudio layout; two train scenes."""
    root = tmp_path_factory.mktemp("ns")
    WRITERS["nerfstudio"](root, rendered_scenes(3, 13))
    return nerfstudio_dataset(NerfstudioConfig(root=str(root), frames_per_scene=13, resolution=16), split="train")


def _sampling(views: int, masking: bool, batch_size: int = 4) -> ViewSampling:
    return ViewSampling(seed=3, batch_size=batch_size, views=views, sampler=ModeSampler(), cond_drop_prob=0.3,
                        random_masking=masking)


def _in_memory(scenes, sampling: ViewSampling, step: int, indices: range):
    return make_train_batch(scenes, seed=sampling.seed, step=step, indices=indices, batch_size=sampling.batch_size,
                            views=sampling.views, sampler=sampling.sampler, cond_drop_prob=sampling.cond_drop_prob,
                            random_masking=sampling.random_masking, frame_times=sampling.frame_times)


def _assert_same(a, b) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_in_memory_batches(scenes_on_disk, workers):
    """Two processes' micro-batches over 3 steps, with an off-plan request in between (the
    throughput meter's probe): every batch equals the in-memory one, bit for bit."""
    scenes = stack_scenes(scenes_on_disk, time_positions=False)
    sampling = _sampling(views=4, masking=False)
    draw = StreamingDraw(StreamedSamples(scenes_on_disk, sampling), workers=workers)
    parts = [range(2, 3), range(3, 4)]                    # rank 1 of 2, grad_accum 2
    draw.start(1, 4, parts)
    for step in range(1, 4):
        if step == 2:
            _assert_same(draw(step, range(1)), _in_memory(scenes, sampling, step, range(1)))
        for part in parts:
            _assert_same(draw(step, part), _in_memory(scenes, sampling, step, part))


def test_frame_times_give_each_view_its_own_t_and_stream_the_same(scenes_on_disk):
    """`frame_times` (the model's `frame_time`): t (B, V) from the sampler, one per view; noised()
    puts each target frame on the path at its own t and keeps references clean; streamed batches
    equal in-memory ones; without it t stays one per sample (B,)."""
    scenes = stack_scenes(scenes_on_disk, time_positions=False)
    sampling = dataclasses.replace(_sampling(views=6, masking=False), frame_times=True)
    batch = _in_memory(scenes, sampling, 5, range(4))
    assert batch.t.shape == (4, 6) and bool(((batch.t >= 0) & (batch.t <= 1)).all())
    assert bool((batch.t.std(dim=1) > 0.01).all())                       # the views' levels differ
    t = batch.t[:, :, None, None, None]
    expected = torch.where(batch.is_reference[:, :, None, None, None], batch.x, (1 - t) * batch.x + t * batch.noise)
    torch.testing.assert_close(batch.noised(), expected, atol=1e-6, rtol=0)
    draw = StreamingDraw(StreamedSamples(scenes_on_disk, sampling), workers=0)
    draw.start(5, 6, [range(4)])
    _assert_same(draw(5, range(4)), batch)
    assert _in_memory(scenes, _sampling(views=6, masking=False), 5, range(4)).t.shape == (4,)


def test_a_corrupt_image_in_a_worker_is_the_original_one_line_error(tmp_path):
    """A PNG whose header is intact (so loading validated it) but whose data is cut off fails in a
    worker; the training loop gets the DataError naming the file, not the loader's traceback."""
    WRITERS["nerfstudio"](tmp_path, rendered_scenes(3, 5))
    dataset = nerfstudio_dataset(NerfstudioConfig(root=str(tmp_path), frames_per_scene=5, resolution=16), split="train")
    bad = tmp_path / "scene_0" / "images" / "frame_00002.png"
    bad.write_bytes(bad.read_bytes()[:60])
    draw = StreamingDraw(StreamedSamples(dataset, _sampling(views=5, masking=False)), workers=1)
    draw.start(0, 4, [range(4)])
    with pytest.raises(DataError) as err:
        for step in range(4):
            draw(step, range(4))
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_twelve_views_with_random_masking(scenes_on_disk):
    """V = 12 of 13 frames: streamed == in memory; the number of references follows π(n) ∝ 2^−n
    (n = 1..11) and random masking leaves subsets of both kinds active."""
    scenes = stack_scenes(scenes_on_disk, time_positions=False)
    sampling = _sampling(views=12, masking=True, batch_size=200)
    streamed = StreamedSamples(scenes_on_disk, sampling).batch(0, range(8))
    _assert_same(streamed, _in_memory(scenes, sampling, 0, range(8)))
    batch = _in_memory(scenes, sampling, 0, range(200))
    refs = batch.is_reference.sum(1).double()
    n = torch.arange(1, 12, dtype=torch.float64)
    expected = (n * 2.0**-n).sum() / (2.0**-n).sum()
    assert abs(refs.mean() - expected) < 0.25                 # ~2.0; sd of the mean ≈ 0.09
    active = batch.frame_mask.sum(2) > 1                       # a frame seeing another frame is active
    assert (batch.loss_mask <= (active & ~batch.is_reference)).all()
    assert (active & batch.is_reference).any(1).all() and batch.loss_mask.any(1).all()
    assert (~active).any()                                     # masking did switch views off


def test_clips_are_positioned_by_theta_t(tmp_path):
    """Video clips: times θ_t = 2π·k/N for kept frame k of N (SPEC §2), and the model gets no poses."""
    WRITERS["video"](tmp_path, rendered_scenes(3, 6))
    clips = video_dataset(VideoConfig(root=str(tmp_path), frames_per_scene=6, resolution=16), split="train")
    scenes = stack_scenes(clips, time_positions=True)
    assert torch.allclose(scenes.times, (2 * math.pi / 6) * torch.arange(6.0).expand(len(clips), 6))
    sampling = _sampling(views=4, masking=False)
    streamed = StreamedSamples(clips, sampling, time_positions=True).batch(5, range(4))
    memory = _in_memory(scenes, sampling, 5, range(4))
    _assert_same(streamed, memory)
    assert torch.equal(streamed.times, memory.times)
    assert streamed.positions()["extrinsics"] is None and streamed.positions()["times"] is streamed.times


def test_run_streams_with_workers_bit_identically(tmp_path):
    """`run.py dataset=nerfstudio` trains the same weights streamed with 2 workers as in memory."""
    WRITERS["nerfstudio"](tmp_path / "ns", rendered_scenes(3, 5))
    model = [o for o in TINY if not o.startswith("dataset.")]
    common = [*model, "model=kaleido", "dataset=nerfstudio", f"dataset.root={tmp_path / 'ns'}",
              "dataset.frames_per_scene=5", "dataset.resolution=16", "trainer.steps=3", "trainer.checkpoint_every=3", "eval.orbit=false"]
    weights = {}
    for stream, workers in (("on", 2), ("off", 0)):
        run_dir = tmp_path / f"run_{stream}"
        result = run(*common, f"trainer.stream={stream}", f"trainer.data_workers={workers}",
                     f"hydra.run.dir={run_dir}", data_root=tmp_path / "data")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "psnr" in json.dumps(json.loads((run_dir / "metrics.json").read_text())["eval"])
        weights[stream] = (run_dir / "checkpoints" / "step_00000003" / "ema.safetensors").read_bytes()
    assert weights["on"] == weights["off"]
