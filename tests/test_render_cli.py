"""`experiments/render.py` end to end on a tiny checkpoint trained in the test: orbits of an embedded
held-out scene generated in chunks (PSNR vs the ground-truth orbit reported, and checked against an
independent recomputation), photos without poses (SfM), and one-line errors for bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_model

sys.path.insert(0, str(Path(__file__).parent))
from _runs import REPO, TINY, env, run_metrics  # noqa: E402

from seqrender.experiments.configstore import mirror_registry, prepare_registry  # noqa: E402
from seqrender.experiments.render import RenderError  # noqa: E402
from seqrender.experiments.render.command import run_render  # noqa: E402
from seqrender.experiments.render.photos import HELDOUT_SCENE, textured_views, write_photos  # noqa: E402

RENDER = REPO / "experiments" / "render.py"
FAST = ["threads=1", "schedule.num_steps=2", "render.progress=false", "render.views=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, data root) of a 20-step tiny run (8 scenes, 2 held out, 16×16)."""
    root = tmp_path_factory.mktemp("render")
    run_metrics(*TINY, "trainer.steps=20", run_dir=root / "run", data_root=root / "data")
    return root / "run", root / "data"


def render_cli(*overrides: str, data_root: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(RENDER), *FAST, *overrides, f"render.out={out}", f"hydra.run.dir={out}"]
    return subprocess.run(cmd, cwd=REPO, env=env(data_root), capture_output=True, text=True, timeout=600)


def render_here(*overrides: str, data_root: Path, out: Path, monkeypatch) -> dict:
    """The same command in this process (Hydra's compose API): faster than a subprocess."""
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("SEQRENDER_DATA", str(data_root))
    prepare_registry()
    mirror_registry()
    with initialize_config_dir(config_dir=str(REPO / "experiments" / "configs"), version_base="1.3"):
        cfg = compose("render", [*FAST, *overrides, f"render.out={out}"])
    return run_render(cfg, run_dir=out)


def psnr64(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of 10·log10(1 / MSE), float64; a, b (V, H, W, 3) in [0, 1]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(1 / mse)))


@pytest.mark.parametrize("references", [1, 3])
def test_orbit_of_a_heldout_scene_in_chunks(trained, tmp_path, monkeypatch, references):
    run_dir, data = trained
    out = tmp_path / "render"
    overrides = (f"render.checkpoint={run_dir}", "render.scene=heldout:0", f"render.references={references}")
    if references == 1:  # through the command line, as the README runs it
        result = render_cli(*overrides, data_root=data, out=out)
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        render_here(*overrides, data_root=data, out=out, monkeypatch=monkeypatch)
    info = json.loads((out / "render.json").read_text())
    assert info["views"] == 8 and info["references"] == references and info["view_budget"] == 4
    print(f"{references} reference(s): PSNR {info['psnr']:.2f} dB / SSIM {info['ssim']:.3f} vs the ground-truth orbit")
    frames = np.stack([np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png")) / 255 for i in range(8)])
    # ground truth at the path cameras (its renderer is checked against the stored views below)
    cams = json.loads((out / "cameras.json").read_text())
    scene, _ = heldout_truth(run_dir, data, monkeypatch)
    truth = scene.truth(torch.tensor(cams["intrinsics"]), torch.tensor(cams["extrinsics"]))
    assert abs(psnr64(frames, truth.permute(0, 2, 3, 1).numpy()) - info["psnr"]) < 0.05
    with av.open(str(out / "video.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 8
    with Image.open(out / "video.gif") as gif:
        assert gif.n_frames == 8
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 8 * 16


def heldout_truth(run_dir: Path, data: Path, monkeypatch):
    """render.inputs' Scene for heldout:0 of the run's dataset."""
    from omegaconf import OmegaConf

    from seqrender.experiments.config import validate_config
    from seqrender.experiments.render.inputs import heldout_scene

    monkeypatch.setenv("SEQRENDER_DATA", str(data))
    prepare_registry()
    cfg = validate_config(OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True))
    return heldout_scene("heldout:0", cfg, references=1), cfg


def test_heldout_truth_matches_the_stored_views(trained, monkeypatch):
    """The ground truth render.py scores against re-renders the held-out scene itself: at the
    scene's own cameras it reproduces the dataset's stored PNG views (8-bit rounding aside)."""
    run_dir, data = trained
    scene, cfg = heldout_truth(run_dir, data, monkeypatch)
    dataset = cfg.dataset.build(split="heldout")
    item = dataset.get_item(0, frames=range(len(dataset.cameras[0])))
    truth = scene.truth(item["intrinsics"], item["extrinsics"])
    assert truth.shape == item["images"].shape
    assert (truth - item["images"]).abs().max() < 2.5 / 255


def test_photos_without_poses(trained, tmp_path, monkeypatch):
    run_dir, data = trained
    images, _, _ = textured_views(HELDOUT_SCENE, views=24, size=160)
    write_photos(tmp_path / "photos", images)
    out = tmp_path / "render"
    render_here(f"render.checkpoint={run_dir}", f"render.scene={tmp_path / 'photos'}", "render.views=4",
                data_root=data, out=out, monkeypatch=monkeypatch)
    info = json.loads((out / "render.json").read_text())
    assert info["references"] == 24 and "psnr" not in info
    assert len(list((out / "frames").glob("*.png"))) == 4


def _photo(path: Path, size=(16, 16)) -> None:
    Image.new("RGB", size, "red").save(path)


def _setup_error(kind: str, tmp_path: Path, run_dir: Path) -> list[str]:
    photos = tmp_path / "photos"
    photos.mkdir()
    if kind == "no images":
        return [f"render.scene={photos}"]
    _photo(photos / "a.png")
    if kind == "unreadable":
        (photos / "b.png").write_text("not an image")
    if kind == "mixed sizes":
        _photo(photos / "b.png", (20, 16))
    if kind in ("unreadable", "mixed sizes"):
        return [f"render.scene={photos}"]
    if kind == "unknown trajectory":
        return ["render.trajectory=zigzag"]
    if kind == "other size":  # a bare weights file: the model comes from this command's (default) config
        ckpt = next((run_dir / "checkpoints").glob("step_*")) / "ema.safetensors"
        shutil.copy(ckpt, tmp_path / "ema.safetensors")
        return [f"render.checkpoint={tmp_path / 'ema.safetensors'}"]
    if kind == "other model":
        from seqrender.models.fourreal import FourReal, FourRealConfig

        save_model(FourReal(FourRealConfig(hidden=32, heads=2, kv_heads=1, layers=1)), str(tmp_path / "fourreal.safetensors"))
        return [f"render.checkpoint={tmp_path / 'fourreal.safetensors'}"]
    if kind == "no checkpoint":
        return [f"render.checkpoint={photos}"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("no images", "no images"), ("unreadable", "b.png: unreadable image"), ("mixed sizes", "b.png: size 20x16 differs"),
    ("unknown trajectory", "render.trajectory: unknown trajectory 'zigzag'"),
    ("other size", "does not fit model 'kaleido'"), ("other model", "does not fit model 'kaleido'"),
    ("no checkpoint", "render.checkpoint:"),
])
def test_bad_input_is_one_line(trained, tmp_path, monkeypatch, kind, message):
    run_dir, data = trained
    overrides = [f"render.checkpoint={run_dir}", *_setup_error(kind, tmp_path, run_dir)]
    with pytest.raises(RenderError, match=message) as err:
        render_here(*overrides, data_root=data, out=tmp_path / "render", monkeypatch=monkeypatch)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [("render.trajectory=zigzag", "error: render.trajectory: unknown"),
                                               ("render.views=0", "config error: render.views: Input should be")])
def test_command_line_errors_exit_2_with_one_line(trained, tmp_path, override, message):
    run_dir, data = trained
    result = render_cli(f"render.checkpoint={run_dir}", override, data_root=data, out=tmp_path / "render")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), result.stderr[-2000:]


def test_blender_scene_folder_with_interpolation(trained, tmp_path, monkeypatch):
    """A scene folder in the Blender layout (here one of the embedded dataset's): the path through its
    3 input cameras passes through them (the first and last rendered cameras are inputs 0 and 2)."""
    run_dir, data = trained
    scene = next(data.glob("embedded-*/scene_0006"))
    out = tmp_path / "render"
    info = render_here(f"render.checkpoint={run_dir}", f"render.scene={scene}", "render.references=3",
                       "render.trajectory=interpolate", "render.views=5", data_root=data, out=out,
                       monkeypatch=monkeypatch)
    assert info["views"] == 5 and info["references"] == 3
    cams = json.loads((out / "cameras.json").read_text())
    rendered, inputs = np.array(cams["extrinsics"]), np.array(cams["inputs"]["extrinsics"])
    assert np.allclose(rendered[[0, 2, 4]], inputs, atol=1e-5)
