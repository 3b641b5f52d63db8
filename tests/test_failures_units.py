"""Issue 11, the parts that need no training run: checkpoint manifests and disk-full writes, run-dir
lock, strict metrics JSON, one-line failure reports, resume config comparison, Blender data details,
install commands in the package READMEs, run.log without progress-bar redraws."""
import errno
import io
import json
import math
import os
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seqrender.experiments import report
from seqrender.experiments.checkpoint import (checkpoint_dirs, latest_checkpoint, remove_temp_files,
                                              save_checkpoint, verify)
from seqrender.experiments.config import ConfigError
from seqrender.experiments.data.blender import load_scene, read_cameras
from seqrender.experiments.failures import DiskFullError, RunError, UserError, describe, reported
from seqrender.experiments.resume import config_changes, may_change
from seqrender.experiments.runlock import locked
from seqrender.experiments.runlog import Tee

REPO = Path(__file__).resolve().parents[1]


def _save(root: Path, step: int, model: nn.Module, **kw) -> Path:
    return save_checkpoint(root, step, model=model, ema=model, state={"step": step}, **kw)


def test_manifest_detects_truncation_and_bit_flips(tmp_path):
    model = nn.Linear(8, 8)
    ckpt = _save(tmp_path, 2, model)
    assert verify(ckpt) is None
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name, entry in manifest["files"].items():  # sizes in the manifest are the files' sizes
        assert entry["bytes"] == (ckpt / name).stat().st_size
    data = bytearray((ckpt / "ema.safetensors").read_bytes())
    data[-3] ^= 0x10
    (ckpt / "ema.safetensors").write_bytes(bytes(data))
    assert "checksum" in verify(ckpt)
    (ckpt / "ema.safetensors").write_bytes(bytes(data[:-5]))
    assert "truncated" in verify(ckpt)
    (ckpt / "ema.safetensors").unlink()
    assert "ema.safetensors is missing" in verify(ckpt)


def test_scanning_ignores_a_missing_latest_and_older_steps_are_never_written_over_newer(tmp_path):
    model = nn.Linear(4, 4)
    _save(tmp_path, 1, model, keep=5)
    _save(tmp_path, 3, model, keep=5)
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000003"
    with pytest.raises(RunError, match="step_00000003 is newer and intact"):
        _save(tmp_path, 2, model, keep=5)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000003", "step_00000001"]


def test_non_finite_weights_are_never_saved(tmp_path):
    model = nn.Linear(4, 4)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(RunError, match="weight is not finite"):
        _save(tmp_path, 1, model)
    assert not (tmp_path / "step_00000001").exists()


def test_disk_full_is_said_plainly_and_leaves_no_temp_file(tmp_path):
    """A real ENOSPC from the kernel: the temporary file of state.pt is a link to /dev/full."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    model = nn.Linear(4, 4)
    _save(tmp_path, 1, model)
    ckpt = tmp_path / "step_00000002"
    ckpt.mkdir()
    tmp = ckpt / f".state.pt.tmp{os.getpid()}"
    tmp.symlink_to("/dev/full")
    with pytest.raises(DiskFullError) as caught:
        _save(tmp_path, 2, model)
    line, code = describe(caught.value)
    assert line.startswith("error: disk full: ") and "state.pt" in line and code == 1
    assert not tmp.is_symlink() and not tmp.exists()
    assert (tmp_path / "latest").read_text().strip() == "step_00000001"
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000001"


def test_orphan_temp_files_are_removed(tmp_path):
    orphans = [tmp_path / ".metrics.json.tmp123", tmp_path / "checkpoints" / "step_00000004" / ".state.pt.tmp99"]
    for path in orphans:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    keep = tmp_path / "checkpoints" / "step_00000004" / "state.pt"
    keep.write_bytes(b"whole")
    assert sorted(remove_temp_files(tmp_path)) == sorted(orphans)
    assert keep.exists() and not any(p.exists() for p in orphans)


def test_second_lock_on_a_run_dir_is_refused(tmp_path):
    with locked(tmp_path):
        with pytest.raises(UserError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
            with locked(tmp_path):
                pass
        with locked(tmp_path, rank=1):  # the other ranks of the same job lock their own file
            pass
    with locked(tmp_path):  # released
        pass


def test_metrics_json_is_strict_with_null_and_reason(tmp_path):
    path = tmp_path / "metrics.json"
    report.write_metrics(path, {"eval": {"1->3": {"trained": {"psnr": float("nan"), "ssim": 0.5}}},
                                "train": {"losses": [1.0, float("inf")]}})

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    metrics = json.loads(path.read_text(), parse_constant=reject)
    assert metrics["eval"]["1->3"]["trained"] == {"psnr": None, "ssim": 0.5}
    assert metrics["train"]["losses"] == [1.0, None]
    assert set(metrics["null_reasons"]) == {"eval.1->3.trained.psnr", "train.losses[1]"}
    assert "nan" in metrics["null_reasons"]["eval.1->3.trained.psnr"]


@pytest.mark.parametrize("exc, prefix, code", [
    (ConfigError("model.hidden: bad"), "config error: model.hidden", 2),
    (UserError("run dir x is in use"), "error: run dir", 2),
    (ValueError("a.json: frame 3: bad\nsecond line"), "error: a.json: frame 3", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/x/run"), "error: cannot write /x/run", 2),
    (OSError(errno.ENOSPC, "No space left on device", "/x/f"), "error: disk full", 1),
    (RunError("training stopped"), "error: training stopped", 1),
    (KeyError("boom"), "error: KeyError: 'boom'", 1),
])
def test_failures_are_one_line_with_the_right_exit_code(exc, prefix, code, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as caught:
        with reported(None):
            raise exc
    err = capsys.readouterr().err
    assert caught.value.code == code
    assert len(err.strip().splitlines()) == 1 and err.startswith(prefix), err


def test_full_error_env_keeps_the_traceback(monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(KeyError):
        with reported(None):
            raise KeyError("boom")


def test_resume_config_comparison_lists_only_keys_that_may_not_change():
    saved = {"model.hidden": 32, "trainer.steps": 4, "eval.num_items": 2, "trainer.lr": 0.1, "seed": 0}
    current = {"model.hidden": 64, "trainer.steps": 8, "eval.num_items": 5, "trainer.lr": 0.1, "seed": 1}
    assert config_changes(saved, current) == ["model.hidden (32 -> 64)", "seed (0 -> 1)"]
    assert may_change("eval.guidance_scale") and may_change("trainer.steps") and not may_change("trainer.lr")
    assert config_changes(None, current) == []


def test_checkpoints_from_before_view_sampling_resume_with_its_default():
    """A manifest written before trainer.view_sampling existed was trained with n ~ 2^-n."""
    saved = {"trainer.lr": 0.1}
    exponential = {"trainer.lr": 0.1, "trainer.view_sampling": "exponential", "trainer.fixed_references": 1}
    assert config_changes(saved, exponential) == []
    fixed = {**exponential, "trainer.view_sampling": "fixed"}
    assert config_changes(saved, fixed) == ["trainer.view_sampling ('exponential' -> 'fixed')"]


def _field_defaults(key: str) -> list:
    """The defaults the config classes declare for a dotted key: one per class that has the field."""
    import dataclasses

    from seqrender.experiments.config import EvalConfig, RunConfig, TrainerConfig
    from seqrender.experiments.configstore import prepare_registry
    from seqrender.models import registry

    head, _, field = key.rpartition(".")
    pydantic_classes = {"": RunConfig, "trainer": TrainerConfig, "eval": EvalConfig}
    if head in pydantic_classes:
        info = pydantic_classes[head].model_fields.get(field)
        return [] if info is None else [info.get_default(call_default_factory=True)]
    prepare_registry()
    defaults = []
    for name in registry.names(head):
        config = registry.config_class(head, name)()
        if field in {f.name for f in dataclasses.fields(config)}:
            defaults.append(getattr(config, field))
    return defaults


def test_added_keys_name_the_config_classes_defaults():
    """An old checkpoint resumes only under the behaviour it was trained with: every ADDED_KEYS value is
    the default of each config class that declares the key (so a missing key never hides a change)."""
    from seqrender.experiments.resume import ADDED_KEYS

    for key, value in ADDED_KEYS.items():
        defaults = _field_defaults(key)
        assert defaults, f"{key}: no config class declares it"
        normalised = [list(d) if isinstance(d, tuple) else d for d in defaults]
        assert all(d == value for d in normalised), f"{key}: ADDED_KEYS says {value!r}, the classes {normalised!r}"


def _scene(tmp_path: Path, matrix, image: Image.Image) -> Path:
    (tmp_path / "train").mkdir(parents=True)
    image.save(tmp_path / "train" / "r_0.png")
    meta = {"camera_angle_x": 0.69, "frames": [{"file_path": "./train/r_0", "transform_matrix": matrix}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    return tmp_path


def test_nan_pose_message_says_nan(tmp_path):
    matrix = np.eye(4).tolist()
    matrix[1][3] = float("nan")
    _scene(tmp_path, matrix, Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match=r"NaN/Inf at \[1\]\[3\]=nan"):
        read_cameras(tmp_path)


def test_sixteen_bit_png_is_read_at_full_precision(tmp_path):
    grey = np.linspace(0, 65535, 6 * 8).round().astype(np.uint16).reshape(6, 8)
    _scene(tmp_path, np.eye(4).tolist(), Image.fromarray(grey))
    with Image.open(tmp_path / "train" / "r_0.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit PNG on disk
    views = load_scene(tmp_path)
    expected = torch.from_numpy(grey.astype(np.float64) / 65535.0).float()
    for channel in range(3):
        torch.testing.assert_close(views.images[0, channel], expected, rtol=0, atol=1e-6)


def test_readme_install_commands_work_from_a_clone():
    """Every `pip install` in a package README names a folder of this repo (and extras it defines)."""
    for readme in sorted(REPO.glob("packages/*/README.md")):
        for target in re.findall(r"^\s*pip install\s+(\S+)", readme.read_text(), flags=re.M):
            target = target.strip("\"'")
            if target == "torch":
                continue
            path, _, extras = target.partition("[")
            assert (REPO / path / "pyproject.toml").is_file() or (REPO / path / "setup.py").is_file(), \
                f"{readme}: `pip install {target}` names no package folder"
            if extras:
                defined = tomllib.loads((REPO / path / "pyproject.toml").read_text())["project"]["optional-dependencies"]
                assert set(extras.rstrip("]").split(",")) <= set(defined), f"{readme}: extras {extras}"


def test_run_log_keeps_lines_without_progress_bar_redraws():
    console, log = io.StringIO(), io.StringIO()
    tee = Tee(console, log)
    tee.write("resuming\n")
    for i in range(1, 4):
        tee.write(f"\rtrain: {i}/3")
    tee.write("\n")
    tee.write("done")
    tee.close_line()
    assert console.getvalue().count("\r") == 3
    assert log.getvalue() == "resuming\ntrain: 3/3\ndone\n"


def _main_job_config(*overrides: str):
    """The main job's validated config (Kaleido preset: two local ranks) with `overrides`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seqrender.experiments.cli import before_compose
    from seqrender.experiments.config import validate_config

    before_compose([])
    configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        raw = compose(config_name="config", overrides=["model=kaleido", *overrides])
    return validate_config(OmegaConf.to_container(raw, resolve=True))


@pytest.mark.parametrize("gpus, cpu, rank, fails", [(1, False, None, True), (2, False, None, False),
                                                    (1, True, None, False), (1, False, "0", False)])
def test_more_local_ranks_than_gpus_is_one_line_before_launch(gpus, cpu, rank, fails, monkeypatch):
    """On CUDA, run.py's local ranks each need a GPU (accelerate puts rank k on cuda:k): the main job's
    two ranks on a one-GPU machine fail in pre-flight, naming the field and the fix. Not checked on
    CPU, nor inside a rank a cluster launcher started (RANK set: it assigns GPUs itself)."""
    from seqrender.experiments.preflight import check_gpus_per_rank

    cfg = _main_job_config(f"trainer.cpu={str(cpu).lower()}")
    assert cfg.trainer.local_processes == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.delenv("RANK", raising=False)
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    if not fails:
        check_gpus_per_rank(cfg)
        return
    with pytest.raises(ConfigError) as error:
        check_gpus_per_rank(cfg)
    assert str(error.value) == ("trainer.local_processes: 2 ranks on this machine, but it has 1 GPU; use "
                                "trainer.local_processes=1 (and a trainer.batch_size it divides), or trainer.cpu=true")
