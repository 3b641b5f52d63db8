"""`python experiments/run.py model=kaleido dataset=<format> dataset.root=<fixture>` trains and
evaluates for every real-data format (tiny size), and bad data stops it with one line naming the
file and the problem (exit 2), or is skipped and counted with dataset.on_error=skip."""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _data_formats import WRITERS, rendered_scenes  # noqa: E402
from _runs import TINY, run  # noqa: E402

MODEL = [o for o in TINY if not o.startswith("dataset.")]
DATA = ["dataset.resolution=16", "dataset.frames_per_scene=5"]


@pytest.fixture(scope="module")
def scenes():
    return rendered_scenes(3, 5)  # centred, isotropic intrinsics: every format can store them


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", ["llff", "colmap", "realestate10k", "co3d", "nerfstudio", "video"])
def test_run_trains_and_evaluates_on_each_format(fmt, scenes, tmp_path):
    root = tmp_path / "data"
    WRITERS[fmt](root, scenes)
    run_dir = tmp_path / "run"
    result = run("model=kaleido", f"dataset={fmt}", f"dataset.root={root}", *DATA, *MODEL, "trainer.steps=2",
                 f"hydra.run.dir={run_dir}", data_root=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"]["train_scenes"] == 2 and metrics["data"]["heldout_scenes"] == 1
    assert set(metrics["eval"]) == {"1->3", "3->1"} and metrics["train"]["steps"] == 2
    assert (run_dir / "samples.png").is_file()


def _missing_frame(root: Path) -> None:
    (root / "scene_0" / "images" / "frame_00002.png").unlink()


def _unreadable_image(root: Path) -> None:
    (root / "scene_1" / "images" / "IMG_001.png").write_bytes(b"this is not a PNG file")


def _nan_pose(root: Path) -> None:
    lines = (root / "scene_0.txt").read_text().splitlines()
    fields = lines[3].split()
    fields[10] = "nan"  # t0 of the third frame
    lines[3] = " ".join(fields)
    (root / "scene_0.txt").write_text("\n".join(lines) + "\n")


def _non_orthonormal(root: Path) -> None:
    poses = np.load(root / "scene_1" / "poses_bounds.npy")
    poses[2, [0, 1, 2, 5, 6, 7, 10, 11, 12]] *= 1.5  # scale the third camera's rotation
    np.save(root / "scene_1" / "poses_bounds.npy", poses)


def _inconsistent_sizes(root: Path) -> None:
    Image.new("RGB", (24, 20), "white").save(root / "scene_2" / "images" / "frame_03.png")


def _malformed_annotation(root: Path) -> None:
    path = root / "toycar" / "frame_annotations.jgz"
    with gzip.open(path, "rt") as f:
        entries = json.load(f)
    del entries[4]["viewpoint"]
    with gzip.open(path, "wt") as f:
        json.dump(entries, f)


BAD_DATA = {  # case: (format, corruption, words the one line must hold)
    "missing_frame": ("nerfstudio", _missing_frame,
                      ["scene_0/transforms.json: frame 2 (images/frame_00002.png): image", "not found"]),
    "unreadable_image": ("llff", _unreadable_image, ["scene_1/poses_bounds.npy: frame", "IMG_001.png",
                                                     "cannot read image"]),
    "nan_pose": ("realestate10k", _nan_pose, ["scene_0.txt: frame 1066732 (line 4)", "not finite"]),
    "non_orthonormal_pose": ("llff", _non_orthonormal, ["scene_1/poses_bounds.npy: frame", "IMG_002.png",
                                                        "not orthonormal"]),
    "inconsistent_sizes": ("colmap", _inconsistent_sizes, ["scene_2/sparse/0/images.bin: frame frame_03.png",
                                                           "image size (20, 24)", "differs"]),
    "malformed_annotation": ("co3d", _malformed_annotation, ["toycar/frame_annotations.jgz: annotation 4",
                                                             "malformed frame annotation", "viewpoint"]),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_naming_file_and_problem(case, scenes, tmp_path):
    fmt, corrupt, words = BAD_DATA[case]
    root = tmp_path / "data"
    WRITERS[fmt](root, scenes)
    corrupt(root)
    result = run("model=kaleido", f"dataset={fmt}", f"dataset.root={root}", *DATA, *MODEL, "trainer.steps=2",
                 f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path / "cache")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _lines(result.stderr + result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert lines[0].startswith("data error: ") and all(w in lines[0] for w in words), lines[0]


def test_on_error_skip_counts_and_reports_skipped_scenes(tmp_path):
    root = tmp_path / "data"
    WRITERS["nerfstudio"](root, rendered_scenes(4, 5))
    _missing_frame(root)
    run_dir = tmp_path / "run"
    result = run("model=kaleido", "dataset=nerfstudio", f"dataset.root={root}", "dataset.on_error=skip", *DATA, *MODEL,
                 "trainer.steps=2", f"hydra.run.dir={run_dir}", data_root=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    warning = [line for line in _lines(result.stderr) if line.startswith("warning: dataset split 'train'")]
    assert len(warning) == 1 and "skipped 1 of 3 scenes" in warning[0] and "frame_00002.png" in warning[0], warning
    assert json.loads((run_dir / "metrics.json").read_text())["data"]["train_scenes"] == 2
