"""The train-spec registry: the loop, the job and milestones ask the run's task, never the data type."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run  # noqa: E402

from seqrender.experiments.cli import before_compose  # noqa: E402
from seqrender.experiments.config import ConfigError, validate_config  # noqa: E402
from seqrender.experiments.tasks import TASKS, register, task_for  # noqa: E402
from seqrender.experiments.tasks.kaleido_views import KaleidoViews  # noqa: E402


def config(*overrides: str, tiny=TINY):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    before_compose([])
    configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        raw = compose(config_name="config", overrides=[*tiny, *overrides])
    return validate_config(OmegaConf.to_container(raw, resolve=True))


def test_default_task_follows_the_model_layout():
    assert task_for(config()).name == "multiview"
    grid = config("model=fourreal", "dataset=embedded4d", tiny=[])
    assert task_for(grid).name == "grid"


def test_multiview_batches_draw_one_t_per_view_when_the_model_conditions_per_frame(tmp_path, monkeypatch):
    """model.frame_time (on in the main job's preset) makes the task draw t (B, V); off, t (B,)."""
    from seqrender.experiments.job import load_split

    monkeypatch.setenv("SEQRENDER_DATA", str(tmp_path))
    for frame_time, shape in (("true", (2, 4)), ("false", (2,))):
        cfg = config(f"model.frame_time={frame_time}")
        batch = task_for(cfg).batches(cfg, load_split(cfg, "train"), cfg.sampler.build())(0, range(2))
        assert tuple(batch.t.shape) == shape, frame_time
        loss = task_for(cfg).loss(task_for(cfg).build_model(cfg), batch)
        assert loss.ndim == 0 and torch.isfinite(loss)


def test_unknown_task_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"^task: .*unknown task 'nope'.*registered: grid, multiview"):
        config("task=nope")


def test_a_new_task_is_one_registered_class(tmp_path):
    """A task registered in its own module drives the real training loop: its loss is what trains."""
    from seqrender.experiments.job import load_split
    from seqrender.experiments.train import train

    class CountingViews(KaleidoViews):
        name = "counting_views"
        calls = 0

        def loss(self, model, batch):
            CountingViews.calls += 1
            return 0.0 * super().loss(model, batch)   # zero loss: AdamW with weight decay only

    register(CountingViews())
    try:
        cfg = config("task=counting_views", "trainer.steps=3", "trainer.weight_decay=0.0")
        assert task_for(cfg).name == "counting_views"
        result, ema = train(cfg, load_split(cfg, "train"), run_dir=tmp_path / "run")
        assert CountingViews.calls == 3 and result.step == 3
        initial = task_for(cfg).build_model(cfg)
        # zero gradients and no weight decay: AdamW leaves every weight where it started
        assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), initial.state_dict().values()))
    finally:
        TASKS.pop("counting_views")


def test_unknown_task_on_the_command_line_is_one_line(tmp_path):
    result = run(*TINY, "task=nope", f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path / "data")
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "task" in lines[0] and "Traceback" not in result.stderr
