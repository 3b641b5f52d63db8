"""Real-data formats (LLFF, COLMAP .bin/.txt, RealEstate10K, CO3D, nerfstudio, video): cameras
converted to OpenCV world-to-camera + pixel intrinsics, checked against

- scenes rendered by the project's renderer and written in each layout (tests/_data_formats.py):
  the loaded cameras equal the true ones, and re-rendering with the loaded cameras reproduces the
  loaded (cropped) pixels;
- hand-written fixtures in tests/fixtures/formats/ with hand-derived cameras, and the formats'
  own projection formulas (PyTorch3D NDC for CO3D, quaternions via roma for COLMAP).
"""
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from seqrender.experiments.configstore import prepare_registry
from seqrender.experiments.data import render
from seqrender.experiments.data.co3d import read_co3d_annotations
from seqrender.experiments.data.colmap import read_colmap_scene
from seqrender.experiments.data.llff import read_llff_scene
from seqrender.experiments.data.nerfstudio import read_nerfstudio_scene
from seqrender.experiments.data.realestate import read_realestate_clip
from seqrender.experiments.data.video import read_frame_folder
from seqrender.experiments.data.scene_dataset import DataError, SceneDataset, read_image_frames, resize_crop
from seqrender.models import registry

sys.path.insert(0, str(Path(__file__).parent))
from _data_formats import WRITERS, rendered_scenes  # noqa: E402

prepare_registry()

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
POSED = ["llff", "colmap", "colmap_text", "realestate10k", "co3d", "nerfstudio"]


def rigid(rotation, translation):
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3], out[:3, 3] = torch.tensor(rotation, dtype=torch.float64), torch.tensor(translation, dtype=torch.float64)
    return out


def build(fmt: str, root: Path, split: str = "train", **fields) -> SceneDataset:
    name = "colmap" if fmt == "colmap_text" else fmt
    config = registry.config_class("dataset", name)(root=str(root), **fields)
    return registry.build("dataset", name, config, split=split)


@pytest.fixture(scope="module")
def truths():
    """3 scenes × 5 views at 16×24; off-centre, anisotropic intrinsics (LLFF gets centred ones)."""
    return {"general": rendered_scenes(3, 5, principal_offset=(1.0, -0.5), fy_scale=1.1),
            "centred": rendered_scenes(3, 5)}


@pytest.mark.parametrize("fmt", POSED)
def test_rendered_fixture_cameras_and_pixels_match_the_truth(fmt, truths, tmp_path):
    scenes = truths["centred" if fmt == "llff" else "general"]
    WRITERS[fmt](tmp_path, scenes)
    train, heldout = build(fmt, tmp_path, frames_per_scene=5, resolution=16), build(fmt, tmp_path, "heldout",
                                                                                     frames_per_scene=5, resolution=16)
    assert (len(train), len(heldout)) == (2, 1)
    for dataset, truth in [(train, scenes[0]), (train, scenes[1]), (heldout, scenes[2])]:
        item = dataset.get_item(dataset.names.index(truth.name.split("/")[-1]) if fmt != "co3d" else
                                dataset.names.index(f"toycar/{truth.name}"), frames=range(5))
        assert torch.allclose(item["extrinsics"].double(), truth.extrinsics, atol=1e-5)
        expected_k = truth.intrinsics.clone()
        expected_k[:, 0, 2] -= 4  # 16×24 centre-cropped to 16×16
        assert torch.allclose(item["intrinsics"].double(), expected_k, atol=1e-4)
        again = render(truth.primitives, item["intrinsics"], item["extrinsics"], height=16, width=16)
        assert (again.composite((1.0, 1.0, 1.0)) - item["images"]).abs().max() < 1.01 / 255


def test_video_clips_have_times_and_frames_but_no_poses(truths, tmp_path):
    scenes = truths["general"]
    WRITERS["video"](tmp_path, scenes)
    train = build("video", tmp_path, frames_per_scene=5, resolution=16, fps=10.0)
    assert train.names == ["scene_0", "scene_1"]  # a frame folder and an .mkv file
    for index, truth in enumerate(scenes[:2]):
        item = train.get_item(index, frames=[4, 0, 2])
        assert torch.allclose(item["times"], torch.tensor([0.4, 0.0, 0.2]), atol=1e-6)
        assert torch.equal(item["extrinsics"], torch.eye(4).expand(3, 4, 4))
        expected = torch.from_numpy(truth.rgb[[4, 0, 2], :, 4:20]).permute(0, 3, 1, 2).float() / 255
        assert (item["images"] - expected).abs().max() < 1e-6  # FFV1 is lossless
        k = item["intrinsics"][0]
        assert k[0, 0] == pytest.approx(12 / np.tan(1.0472 / 2), rel=1e-4) and k[0, 2] == pytest.approx(8.0)


# ---- hand-written fixtures (text files; poses derived by hand) -------------------------------------------------


def test_llff_hand_written(tmp_path):
    scene = tmp_path / "room"
    shutil.copytree(FIXTURES / "llff" / "room", scene)
    np.save(scene / "poses_bounds.npy", np.loadtxt(scene / "poses_bounds.txt"))
    parsed = read_llff_scene(scene)
    assert torch.allclose(parsed.extrinsics[0], rigid(np.eye(3), [-1.0, -2.0, -3.0]))
    assert torch.allclose(parsed.extrinsics[1], rigid([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], [0.0, 0.0, 4.0]))
    assert torch.allclose(parsed.intrinsics[0], torch.tensor([[3.0, 0, 2], [0, 3, 1], [0, 0, 1]], dtype=torch.float64))
    dataset = SceneDataset([parsed], views=2, resolution=2, background=(1, 1, 1))
    item = dataset.get_item(0, frames=[0, 1])  # 4×2 image cropped to its middle 2×2
    assert torch.allclose(item["intrinsics"][0], torch.tensor([[3.0, 0, 1], [0, 3, 1], [0, 0, 1]]))
    assert torch.allclose(item["images"][0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # the green pixel (1, 0)


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_hand_written(binary, tmp_path):
    import pycolmap

    model = tmp_path / "sparse"
    shutil.copytree(FIXTURES / "colmap" / "desk" / "sparse" / "0", model)
    if binary:
        pycolmap.Reconstruction(str(model)).write_binary(str(model))
        for f in model.glob("*.txt"):
            f.unlink()
    parsed = read_colmap_scene(model, tmp_path / "images", name="desk")
    assert [p.name for p in parsed.frames] == ["a.png", "b.png"]
    assert torch.allclose(parsed.extrinsics[0], rigid(np.eye(3), [0.0, 0.0, 4.0]))
    quarter_turn_y = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # q = (cos 45°, 0, sin 45°, 0)
    assert torch.allclose(parsed.extrinsics[1], rigid(quarter_turn_y, [1.0, 0.0, 4.0]), atol=1e-12)
    xyzw = torch.tensor([0.0, 0.7071067811865476, 0.0, 0.7071067811865476], dtype=torch.float64)
    assert torch.allclose(parsed.extrinsics[1, :3, :3], roma.unitquat_to_rotmat(xyzw), atol=1e-12)
    assert torch.allclose(parsed.intrinsics, torch.tensor([[[20.0, 0, 12], [0, 21, 8], [0, 0, 1]],
                                                           [[20.0, 0, 12], [0, 20, 8], [0, 0, 1]]], dtype=torch.float64))


def test_realestate10k_hand_written():
    parsed = read_realestate_clip(FIXTURES / "realestate10k" / "clip_a.txt")
    assert torch.allclose(parsed.times, torch.tensor([0.0, 0.033366], dtype=torch.float64))
    assert torch.allclose(parsed.extrinsics[0], rigid(np.eye(3), [0.1, 0.2, 0.3]))
    assert torch.allclose(parsed.extrinsics[1], rigid([[0, -1, 0], [1, 0, 0], [0, 0, 1]], [0.0, 0.0, 2.0]))
    item = SceneDataset([parsed], views=2, resolution=2, background=(1, 1, 1)).get_item(0, frames=[0, 1])
    # normalised (0.5, 0.8, 0.5, 0.5) on a 4×2 image -> fx 2, fy 1.6, c (2, 1); crop 1 column off the left
    assert torch.allclose(item["intrinsics"][0], torch.tensor([[2.0, 0, 1], [0, 1.6, 1], [0, 0, 1]]))


def test_nerfstudio_hand_written():
    parsed = read_nerfstudio_scene(FIXTURES / "nerfstudio" / "garden" / "transforms.json")
    # OpenGL camera at (0, 0, 5) looking down −z: OpenCV flips y and z
    assert torch.allclose(parsed.extrinsics[0], rigid(np.diag([1.0, -1, -1]), [0.0, 0.0, 5.0]))
    assert torch.allclose(parsed.extrinsics[1], rigid([[0, 0, -1], [0, -1, 0], [-1, 0, 0]], [0.0, 0.0, 5.0]))
    assert torch.allclose(parsed.intrinsics[1], torch.tensor([[6.0, 0, 2], [0, 3.5, 1], [0, 0, 1]], dtype=torch.float64))
    for w2c in parsed.extrinsics:  # both cameras see the world origin straight ahead at depth 5
        assert torch.allclose(w2c @ torch.tensor([0.0, 0, 0, 1], dtype=torch.float64),
                              torch.tensor([0.0, 0, 5, 1], dtype=torch.float64))


def _co3d_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "teddybear"
    folder.mkdir()
    entries = json.loads((FIXTURES / "co3d" / "teddybear" / "frame_annotations.json").read_text())
    with gzip.open(folder / "frame_annotations.jgz", "wt") as f:
        json.dump(entries, f)
    return folder / "frame_annotations.jgz"


def test_co3d_hand_written_matches_pytorch3d_projection(tmp_path):
    path = _co3d_fixture(tmp_path)
    scene = read_co3d_annotations(path, tmp_path)["teddybear/seq_1"]
    assert [p.name for p in scene.frames] == ["frame000000.jpg", "frame000001.jpg"]  # sorted by frame_number
    assert torch.allclose(scene.extrinsics[0], rigid(np.diag([-1.0, -1, 1]), [-0.1, -0.2, 3.0]))
    assert torch.allclose(scene.intrinsics, torch.tensor([[[2.0, 0, 2], [0, 2, 1], [0, 0, 1]],
                                                          [[2.0, 0, 1], [0, 2, 1.5], [0, 0, 1]]], dtype=torch.float64))
    # PyTorch3D: x_view = X R + T; ndc = f · x_view[:2] / z + p, +x left, +y up; pixels u = W/2 − ndc_x·s
    entries = json.loads((FIXTURES / "co3d" / "teddybear" / "frame_annotations.json").read_text())[::-1]
    point = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    for entry, k, w2c in zip(entries, scene.intrinsics, scene.extrinsics):
        view = entry["viewpoint"]
        x_view = point @ torch.tensor(view["R"], dtype=torch.float64) + torch.tensor(view["T"], dtype=torch.float64)
        ndc = torch.tensor(view["focal_length"]) * x_view[:2] / x_view[2] + torch.tensor(view["principal_point"])
        half = torch.tensor([2.0, 1.0], dtype=torch.float64)
        s = half.min() if view["intrinsics_format"] == "ndc_isotropic" else half
        expected = half - ndc * s
        cam = w2c[:3, :3] @ point + w2c[:3, 3]
        pixel = (k @ cam)[:2] / cam[2]
        assert torch.allclose(pixel, expected.double(), atol=1e-12)


def test_video_frame_folder_hand_written():
    clip = read_frame_folder(FIXTURES / "video" / "walk", 10.0, 1.0472)
    assert torch.allclose(clip.times, torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64))
    frames = read_image_frames(clip, [1])
    assert np.allclose(frames[0][0, 0], [0.0, 0.0, 1.0, 1.0])  # blue, opaque


def test_scene_choice_and_frame_count_errors_name_the_problem(truths, tmp_path):
    WRITERS["nerfstudio"](tmp_path, truths["general"])
    with pytest.raises(DataError, match=r"dataset.scenes names 'nope', which is not there \(found: scene_0, scene_1"):
        build("nerfstudio", tmp_path, scenes=("scene_0", "nope"))
    with pytest.raises(DataError, match=r"scene_0/transforms.json: scene 'scene_0' has 5 frames, fewer than "
                                        r"dataset.frames_per_scene=8"):
        build("nerfstudio", tmp_path, frames_per_scene=8)
    with pytest.raises(DataError, match=r"found 2 scene\(s\); need more than dataset.heldout_scenes=2"):
        build("nerfstudio", tmp_path, scenes=("scene_0", "scene_1"), heldout_scenes=2, frames_per_scene=5)
    kept = build("nerfstudio", tmp_path, frames_per_scene=3, on_error="skip")
    assert [int(f) for f in kept.get_item(0, frames=[0, 1, 2])["frames"]] == [0, 1, 2]
    assert kept.cameras[0].labels == ["0 (images/frame_00000.png)", "2 (images/frame_00002.png)",
                                      "4 (images/frame_00004.png)"]  # evenly spaced of 5


def test_resize_crop_keeps_pixels_and_intrinsics_consistent():
    """A horizontal ramp whose value is the native pixel-centre coordinate u: after resize + crop, the
    value stored at a new pixel is the native u that the new intrinsics map its centre ray to."""
    height, width = 6, 12
    u = torch.arange(width, dtype=torch.float32) + 0.5
    images = (u / width).expand(1, 3, height, width).contiguous()
    k = torch.tensor([[[10.0, 0.0, 6.2], [0.0, 11.0, 2.9], [0.0, 0.0, 1.0]]])
    out, k_new = resize_crop(images, k, 3)
    assert out.shape == (1, 3, 3, 3)
    centres = torch.arange(3, dtype=torch.float64) + 0.5
    x_over_z = (centres - k_new[0, 0, 2]) / k_new[0, 0, 0]  # the ray through each new pixel centre
    native_u = k[0, 0, 0] * x_over_z + k[0, 0, 2]
    assert torch.allclose(out[0, 0, 1].double() * width, native_u, atol=1e-5)
    assert torch.allclose(k_new[0, 1, 1], torch.tensor(5.5)) and torch.allclose(k_new[0, 1, 2], torch.tensor(1.45))


def test_truncated_image_fails_at_decode_with_one_line(truths, tmp_path):
    WRITERS["nerfstudio"](tmp_path, truths["general"])
    path = tmp_path / "scene_1" / "images" / "frame_00003.png"
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut
    dataset = build("nerfstudio", tmp_path, frames_per_scene=5, resolution=16)
    with pytest.raises(DataError, match=r"scene_1/transforms.json: frame 3 \(images/frame_00003.png\): cannot "
                                        r"(decode|read) image .*frame_00003.png") as err:
        dataset.get_item(1, frames=[0, 3])
    assert "\n" not in str(err.value)
