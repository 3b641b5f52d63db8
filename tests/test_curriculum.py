"""The video -> 3D curriculum (issue 12 §6): `trainer.init_from` (weights only, one-line error on a
shape mismatch), the video stage's θ_t positions without poses on the embedded moving scenes, and
`experiments/curriculum.py curriculum_tiny` end to end (video 16 px -> 3D 16 px -> 3D 32 px)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from seqrender.experiments.cli import before_compose
from seqrender.experiments.config import validate_config
from seqrender.experiments.failures import UserError, describe
from seqrender.experiments.init_from import init_from
from seqrender.experiments.tasks import task_for
from seqrender.experiments.tasks.kaleido_views import flow_loss
from seqrender.experiments.train import build_model
from seqrender.models.kaleido import Kaleido

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, env  # noqa: E402

MODEL = [o for o in TINY if not o.startswith("dataset.")]


def run_config(*overrides: str):
    before_compose([])
    with initialize_config_dir(config_dir=str(REPO / "experiments" / "configs"), version_base="1.3"):
        return validate_config(OmegaConf.to_container(compose(config_name="config", overrides=[*MODEL, *overrides]),
                                                      resolve=True))


def test_init_from_loads_the_weights_and_names_a_mismatch(tmp_path):
    cfg = run_config()
    source = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(i))
              for i, (k, v) in enumerate(build_model(cfg).state_dict().items())}
    step_dir = tmp_path / "run" / "checkpoints" / "step_00000007"
    step_dir.mkdir(parents=True)
    save_file(source, str(step_dir / "ema.safetensors"))
    model, ema = build_model(cfg), build_model(cfg)
    assert init_from(str(step_dir), model, ema) == step_dir / "ema.safetensors"  # run dirs: the e2e test
    for name, value in load_file(str(step_dir / "ema.safetensors")).items():
        assert torch.equal(model.state_dict()[name], value) and torch.equal(ema.state_dict()[name], value), name
    wider = build_model(run_config("model.hidden=64"))
    with pytest.raises(UserError) as err:
        init_from(str(step_dir), wider, build_model(run_config("model.hidden=64")))
    line, code = describe(err.value)
    assert code == 2 and "\n" not in line and line.startswith("error: trainer.init_from: ") and "the model's is" in line
    with pytest.raises(UserError, match="no checkpoint found"):
        init_from(str(tmp_path / "nothing"), model, ema)


def test_preflight_checks_init_from_and_clip_length(tmp_path):
    """Before any data is made: init_from must name fitting weights; views must fit a clip's T frames."""
    from seqrender.experiments.config import ConfigError
    from seqrender.experiments.preflight import preflight

    with pytest.raises(UserError, match=r"^trainer.init_from: .*nothing: no checkpoint found"):
        preflight(run_config(f"trainer.init_from={tmp_path / 'nothing'}"), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^trainer.views: 6 views per sample, but the dataset has dataset.times=4"):
        preflight(run_config("dataset=embedded_video", "trainer.views=6"), tmp_path / "run")


def test_video_stage_positions_clips_by_theta_t_without_poses(tmp_path, monkeypatch):
    """dataset=embedded_video: each (scene, camera) row of the moving scenes is a clip; Kaleido gets
    θ_t = 2π·t/T and no extrinsics."""
    monkeypatch.setenv("SEQRENDER_DATA", str(tmp_path))
    cfg = run_config("dataset=embedded_video", "dataset.num_scenes=3", "dataset.heldout_scenes=1",
                     "dataset.resolution=16", "dataset.supersample=1")
    task = task_for(cfg)
    clips = task.load(cfg, "train")
    assert clips.images.shape == (2 * 4, 4, 3, 16, 16)  # 2 scenes × 4 cameras, T = 4 frames
    assert torch.allclose(clips.times, torch.tensor([0.0, 0.5, 1.0, 1.5]) * math.pi)
    batch = task.batches(cfg, clips, cfg.sampler.build())(0, range(2))
    seen = {}
    original = torch.nn.Module.__call__

    def record(self, *args, **kwargs):
        if isinstance(self, Kaleido):
            seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Kaleido, "__call__", record)
    assert torch.isfinite(flow_loss(build_model(cfg), batch))
    assert seen["extrinsics"] is None and torch.equal(seen["times"], batch.times)


def test_curriculum_tiny_runs_video_then_3d_at_two_resolutions(tmp_path):
    out = tmp_path / "cur"
    command = [sys.executable, str(REPO / "experiments" / "curriculum.py"), "curriculum_tiny", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stages = ["video_16", "3d_16", "3d_32"]
    for stage in stages:
        assert (out / stage / "metrics.json").is_file(), stage
    config = {s: OmegaConf.load(out / s / ".hydra" / "config.yaml") for s in stages}
    assert [config[s].dataset.name for s in stages] == ["embedded_video", "embedded", "embedded"]
    assert [config[s].dataset.resolution for s in stages] == [16, 16, 32]
    for previous, stage in zip(stages, stages[1:]):
        assert config[stage].trainer.init_from == str(out / previous)
        assert f"initial weights (trainer.init_from): {out / previous}/checkpoints/step_" in result.stdout
    again = subprocess.run(command, cwd=REPO, env=env(tmp_path / "data"), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("; skipped") == 3
