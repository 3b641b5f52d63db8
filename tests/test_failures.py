"""Issue 11 through `experiments/run.py`: every failure after validation is one line and the right exit
code, and nothing is lost. Fault injection on the newest checkpoint, config changes on resume, the
run-dir lock, a diverging loss, Ctrl-C, pre-flight checks, a sweep with a bad job, run.log."""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, command, env, run  # noqa: E402

from seqrender.experiments.checkpoint import file_digest, verify  # noqa: E402

BASE = [o for o in TINY if not o.startswith("trainer.progress")]
NO_DATA = [o for o in BASE if not o.startswith("dataset.")]  # for dataset=blender
SMALL = [*BASE, "trainer.progress=false", "trainer.steps=4", "trainer.checkpoint_every=2",
         "trainer.keep_checkpoints=3", "eval.num_items=1"]
STEP2, STEP4 = "step_00000002", "step_00000004"


def _lines(text: str) -> list[str]:
    """Non-empty lines, without progress bars (rendering the dataset shows one on stderr)."""
    return [line for line in text.splitlines() if line.strip() and "%|" not in line]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished tiny run with checkpoints at steps 2 and 4, its data root, and its process."""
    root = tmp_path_factory.mktemp("pristine")
    overrides = [*BASE, "trainer.progress=true", *SMALL[len(BASE) + 1:], f"hydra.run.dir={root / 'run'}"]
    result = run(*overrides, data_root=root / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", root / "data", result


def _copy(pristine, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(pristine[0], run_dir)
    return run_dir


def _nan_weights(ckpt: Path) -> None:
    """A self-consistent checkpoint (manifest updated) whose EMA weights are NaN: as if training had
    diverged before the checkpoint was written."""
    weights = {k: torch.full_like(v, float("nan")) for k, v in load_file(ckpt / "ema.safetensors").items()}
    save_file(weights, ckpt / "ema.safetensors")
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["ema.safetensors"] = file_digest(ckpt / "ema.safetensors")
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


CORRUPTIONS = {  # name: (how, words of the skip reason or None when step 4 stays usable)
    "truncated": (lambda c: _truncate(c / "model.safetensors"), "truncated"),
    "bit_flipped": (lambda c: _flip(c / "ema.safetensors"), "checksum"),
    "missing_file": (lambda c: (c / "state.pt").unlink(), "state.pt is missing"),
    "missing_latest": (lambda c: (c.parent / "latest").unlink(), None),
    "nan_weights": (_nan_weights, "non-finite weights"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_resume_lands_on_the_newest_intact_checkpoint(pristine, tmp_path, corruption):
    run_dir = _copy(pristine, tmp_path)
    ckpts = run_dir / "checkpoints"
    good = _digests(ckpts / STEP2)
    how, reason = CORRUPTIONS[corruption]
    how(ckpts / STEP4)
    corrupted = _digests(ckpts / STEP4)

    result = run(*SMALL, f"hydra.run.dir={run_dir}", data_root=pristine[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert _digests(ckpts / STEP2) == good  # the good older checkpoint is untouched
    if reason is None:  # nothing wrong with step 4 itself: found by scanning, not retrained
        assert f"resuming from {ckpts / STEP4} (step 4)" in result.stdout
        assert _digests(ckpts / STEP4) == corrupted
        return
    assert f"skipping checkpoint {STEP4}: " in result.stdout and reason in result.stdout, result.stdout
    assert f"resuming from {ckpts / STEP2} (step 2)" in result.stdout
    assert _digests(ckpts / "skipped" / STEP4) == corrupted  # the refused checkpoint is kept, not lost
    assert verify(ckpts / STEP4) is None  # retrained from step 2
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["steps"] == 4


def test_no_usable_checkpoint_stops_with_one_line_and_touches_nothing(pristine, tmp_path):
    run_dir = _copy(pristine, tmp_path)
    ckpts = run_dir / "checkpoints"
    _truncate(ckpts / STEP4 / "ema.safetensors")
    _flip(ckpts / STEP2 / "model.safetensors")
    before = {c.name: _digests(c) for c in ckpts.iterdir() if c.is_dir()}
    (run_dir / "metrics.json").unlink()

    result = run(*SMALL, f"hydra.run.dir={run_dir}", data_root=pristine[1])
    assert result.returncode == 1
    errors = _lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: no usable checkpoint in {ckpts}"), errors
    assert {c.name: _digests(c) for c in ckpts.iterdir() if c.is_dir()} == before
    assert not (run_dir / "metrics.json").exists()


def test_changed_model_config_on_resume_lists_the_keys(pristine, tmp_path):
    run_dir = _copy(pristine, tmp_path)
    result = run(*SMALL, "model.hidden=64", "seed=3", "eval.num_items=2", f"hydra.run.dir={run_dir}",
                 data_root=pristine[1])
    assert result.returncode == 2
    errors = _lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("config error: cannot resume"), errors
    assert "model.hidden (32 -> 64)" in errors[0] and "seed (0 -> 3)" in errors[0]
    assert "eval.num_items (" not in errors[0] and "trainer.steps, " in errors[0]


def test_second_run_on_a_locked_run_dir_stops_with_one_line(pristine, tmp_path):
    run_dir = _copy(pristine, tmp_path)
    with open(run_dir / ".lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        result = run(*SMALL, f"hydra.run.dir={run_dir}", data_root=pristine[1])
    assert result.returncode == 2
    assert _lines(result.stderr) == [f"error: run dir {run_dir} is in use by another run (pid 4242); wait for it "
                                     f"to end or choose another hydra.run.dir"]


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    """lr = 1e20: after one AdamW step the weights are ~1e20 and the next forward overflows."""
    run_dir = tmp_path / "run"
    result = run(*BASE, "trainer.progress=false", "trainer.lr=1e20", "trainer.steps=6", "trainer.checkpoint_every=1",
                 f"hydra.run.dir={run_dir}", data_root=tmp_path / "data")
    assert result.returncode == 1
    errors = _lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: training stopped at step 2: non-finite loss"), errors
    assert f"last good checkpoint: {run_dir / 'checkpoints' / 'step_00000001'}" in errors[0]
    assert [p.name for p in (run_dir / "checkpoints").glob("step_*")] == ["step_00000001"]
    assert verify(run_dir / "checkpoints" / "step_00000001") is None
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN])  # SIG_IGN: `cmd &` from a script
def test_sigint_checkpoints_then_exits_130(tmp_path, inherited):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(command(*BASE, "trainer.progress=false", "trainer.steps=100000", "trainer.log_every=1",
                                    "trainer.checkpoint_every=100000", f"hydra.run.dir={run_dir}"),
                            cwd=REPO, env=env(tmp_path / "data"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, inherited))
    for line in proc.stdout:
        if line.startswith("step 2/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert _lines(err) == ["interrupted (SIGINT): checkpoint written; rerun the same command to resume"]
    (ckpt,) = (run_dir / "checkpoints").glob("step_*")
    assert verify(ckpt) is None and int(ckpt.name[5:]) >= 2  # only the interrupt could have written it


def test_sigint_during_evaluation_exits_at_once_and_the_rerun_evaluates(tmp_path):
    """Ctrl-C after training stops the run at once (the weights are on disk), not after the whole
    evaluation; rerunning the command evaluates the same weights without training again."""
    run_dir = tmp_path / "run"
    usual = [o for o in BASE if not o.startswith("schedule.num_steps")] + ["trainer.progress=false", "trainer.steps=2",
                                                                            f"hydra.run.dir={run_dir}"]
    slow_eval = [*usual, "schedule.num_steps=200000"]   # 200 000 sampling steps: minutes of evaluation
    proc = subprocess.Popen(command(*slow_eval), cwd=REPO, env=env(tmp_path / "data"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("evaluating"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert _lines(err) == ["interrupted (SIGINT): no training step was running, nothing is lost; "
                           "rerun the same command to resume"]
    assert not (run_dir / "metrics.json").exists()
    (ckpt,) = (run_dir / "checkpoints").glob("step_*")
    assert ckpt.name == STEP2 and verify(ckpt) is None

    result = run(*usual, "schedule.num_steps=2", data_root=tmp_path / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 and "resuming from" in result.stdout
    assert [p.name for p in (run_dir / "checkpoints").glob("step_*")] == [STEP2]


@pytest.mark.parametrize("overrides, start", [
    (["model.hidden=100", "model.heads=4", "model.kv_heads=2"], "config error: model: cannot build 'kaleido'"),
    (["model.patch_size=5"], "config error: model.patch_size: 5 does not divide dataset.resolution=16"),
    (["dataset.resolution=30"], "config error: model.patch_size: 4 does not divide dataset.resolution=30"),
    (["trainer.views=64"], "config error: trainer.views: 64 views per sample"),
    (["dataset=blender", "dataset.root=/nonexistent/path"], "config error: dataset.root: '/nonexistent/path' is not"),
    (["trainer.nonexistent_key=1"], "config error: trainer.nonexistent_key: no such key in the config"),
])
def test_preflight_errors_are_one_line_before_any_data_is_made(tmp_path, overrides, start):
    data_root = tmp_path / "data"
    base = NO_DATA if "dataset=blender" in overrides else BASE
    result = run(*base, *overrides, f"hydra.run.dir={tmp_path / 'run'}", data_root=data_root)
    assert result.returncode == 2
    lines = _lines(result.stderr + result.stdout)
    assert len(lines) == 1 and lines[0].startswith(start), lines
    assert not data_root.exists() or not any(data_root.rglob("*.png"))


def test_blender_data_error_is_one_line(tmp_path):
    scene = tmp_path / "scenes" / "broken"
    scene.mkdir(parents=True)
    (scene / "transforms_train.json").write_text("{not json")
    result = run(*NO_DATA, "dataset=blender", f"dataset.root={tmp_path / 'scenes'}", "dataset.resolution=16",
                 f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path / "data")
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: {scene / 'transforms_train.json'}: not valid JSON"), lines


def test_read_only_run_dir_is_one_line(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run(*BASE, f"hydra.run.dir={mount_point / 'run'}", data_root=tmp_path / "data")
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
    assert result.returncode == 2
    assert _lines(result.stderr) == [f"error: hydra.run.dir: cannot write in {mount_point} (Read-only file system)"]


def test_sweep_prints_one_line_per_failed_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = run("-m", *BASE, "trainer.steps=1", "eval.num_items=1", "model.patch_size=4,5",
                 f"hydra.sweep.dir={sweep}", data_root=tmp_path / "data")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "UncompletedJobError" not in result.stderr
    failed = [line for line in _lines(result.stderr) if line.startswith("failed job ")]
    assert failed == [f"failed job {sweep / '1'}: config error: model.patch_size: 5 does not divide "
                      f"dataset.resolution=16; choose sizes with resolution a multiple of patch_size"]
    assert (sweep / "0" / "metrics.json").is_file()  # the good job still ran


def test_run_log_and_table_of_a_piped_run(pristine):
    run_dir, _, result = pristine
    log = (run_dir / "run.log").read_text()
    assert "\r" not in log
    assert log.count("train: 100%") == 1  # the progress bar's final state, once
    assert "held-out evaluation" in log and f"outputs in {run_dir}" in log
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "setting" in line)
    assert " trained − method (PSNR, 95 % CI) " in header, header  # column names are not cut off in a pipe
    for name in ("trained_1step", "untrained", "mean_reference", "nearest_reference"):
        assert any(f" {name} " in line for line in lines), name  # nor the method names in the rows


def test_batch_not_divisible_by_processes_is_one_line(tmp_path):
    """Two DDP processes (submitit_local) and a global batch of 3: both stop in the pre-flight check."""
    sweep = tmp_path / "sweep"
    result = run("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *BASE,
                 "trainer.batch_size=3", f"hydra.sweep.dir={sweep}", data_root=tmp_path / "data")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "UncompletedJobError" not in result.stderr
    assert [line for line in _lines(result.stderr) if line.startswith("failed job ")] == [
        f"failed job {sweep / '0'}: config error: trainer.batch_size: 3 does not split evenly over the 2 "
        f"processes; use a multiple of 2"]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.png"))
