"""The render command with a 4Real-Video-V2 checkpoint (render/fourd.py): a held-out grid's row and
column -> generated grid videos; with a reconstruction checkpoint -> Gaussians per time step as 3DGS
.ply files, an orbit-over-time video and a contact sheet. Tiny models trained in the test."""
import json
import sys
from pathlib import Path

import av
import pytest
import torch
from plyfile import PlyData

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run_metrics  # noqa: E402
from test_render_cli import render_here  # noqa: E402
from test_recon_task import TINY_RECON  # noqa: E402
from test_e2e_fourreal import TINY_4D  # noqa: E402

from seqrender.experiments.render import RenderError  # noqa: E402
from seqrender.experiments.render.fourd import frame_times  # noqa: E402
from seqrender.recon.ply import property_names  # noqa: E402

DATA = ["dataset.num_scenes=5", "dataset.heldout_scenes=2", "dataset.times=2", "dataset.resolution=8",
        "dataset.supersample=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fourd")
    run_metrics(*TINY_4D, *DATA, "trainer.steps=2", "eval.num_items=1", "eval.batch_size=1", run_dir=root / "gen",
                data_root=root / "data")
    run_metrics(*TINY_RECON, *DATA, "dataset.resolution=8", "trainer.steps=2", "eval.num_items=1",
                run_dir=root / "recon", data_root=root / "data")
    return root


def test_frame_times_advance_evenly():
    assert frame_times(8, 4) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert frame_times(3, 4) == [0, 1, 2]


def test_grid_then_gaussians_ply_and_video(runs, tmp_path, monkeypatch):
    out = tmp_path / "render"
    info = render_here(f"render.checkpoint={runs / 'gen'}", f"render.recon_checkpoint={runs / 'recon'}",
                       "render.scene=heldout:1", "render.views=4", "render.gif=false",
                       data_root=runs / "data", out=out, monkeypatch=monkeypatch)
    assert info["grid"]["cells"] == 3 and info["views"] == 4          # 4 views × 2 times, 5 given
    for key in ("trajectory_vs_truth", "novel_views_vs_truth", "novel_views_from_true_grid_vs_truth"):
        assert 0 < info[key]["psnr"] < 100 and -1 <= info[key]["ssim"] <= 1
    for v in range(4):
        with av.open(str(out / "grid" / f"view_{v}.mp4")) as video:
            assert sum(1 for _ in video.decode(video=0)) == 2
    with av.open(str(out / "video.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 4
    for t in range(2):
        vertex = PlyData.read(str(out / "gaussians" / f"time_{t}.ply"))["vertex"]
        assert [p.name for p in vertex.properties] == property_names() and vertex.count == 4 * 8 * 8
    assert len(list((out / "frames").glob("*.png"))) == 4
    assert (out / "contact_sheet.png").is_file() and (out / "grid.png").is_file()
    assert json.loads((out / "render.json").read_text())["gaussians_per_time_step"] == 4 * 8 * 8


def test_grid_only_without_reconstruction(runs, tmp_path, monkeypatch):
    out = tmp_path / "render"
    info = render_here(f"render.checkpoint={runs / 'gen'}", "render.scene=heldout:0", data_root=runs / "data",
                       out=out, monkeypatch=monkeypatch)
    assert "novel_views_vs_truth" not in info and not (out / "gaussians").exists()
    assert torch.isfinite(torch.tensor(info["grid"]["psnr"]))


@pytest.mark.parametrize("override, message", [
    ("render.scene=heldout:7", r"render.scene: heldout:7: .*heldout:0 .. heldout:1"),
    ("render.recon_checkpoint={gen}", r"render.recon_checkpoint: .* is a 'fourreal' model; expected 'recon'"),
])
def test_bad_input_is_one_line(runs, tmp_path, monkeypatch, override, message):
    with pytest.raises(RenderError, match=message) as err:
        render_here(f"render.checkpoint={runs / 'gen'}", override.format(gen=runs / "gen"), data_root=runs / "data",
                    out=tmp_path / "render", monkeypatch=monkeypatch)
    assert "\n" not in str(err.value)
