"""Blender / NeRF-synthetic layout: hand-written real-format files, write -> read, errors."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from seqrender.experiments.data.blender import load_scene, read_cameras, write_scene
from seqrender.experiments.data.renderer import render
from seqrender.experiments.data.scenes import make_scene, orbit_cameras
from seqrender.experiments.data.seeding import generator_from

LEGO_FOV = 0.6911112070083618  # nerf_synthetic's camera_angle_x


def _opengl_camera_on_minus_y(distance: float) -> list[list[float]]:
    """Blender c2w of a camera at (0, −distance, 0) looking at the origin with world z up:
    OpenGL camera x = world +x, camera y (up) = world +z, camera z (backward) = world −y."""
    return [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -distance], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def _write_real_format_scene(folder, frames, *, size=(6, 8), mode="RGBA"):
    """nerf_synthetic-style: file_path without extension, RGBA PNGs, transforms_test.json."""
    (folder / "test").mkdir(parents=True)
    entries = []
    for i, matrix in enumerate(frames):
        pixels = np.zeros((*size, len(mode)), dtype=np.uint8)
        pixels[..., 0] = 200  # red ...
        if mode == "RGBA":
            pixels[:, : size[1] // 2, 3] = 255  # ... opaque on the left half, transparent on the right
        Image.fromarray(pixels).save(folder / "test" / f"r_{i}.png")
        entries.append({"file_path": f"./test/r_{i}", "rotation": 0.0126, "transform_matrix": matrix})
    (folder / "transforms_test.json").write_text(json.dumps({"camera_angle_x": LEGO_FOV, "frames": entries}))


def test_real_format_file_gives_opencv_cameras_and_composited_images(tmp_path):
    _write_real_format_scene(tmp_path, [_opengl_camera_on_minus_y(4.0)])
    views = load_scene(tmp_path, split="test", background=(0.0, 0.0, 1.0))
    assert views.images.shape == (1, 3, 6, 8)
    torch.testing.assert_close(views.images[0, :, 0, 0], torch.tensor([200 / 255, 0.0, 0.0]))
    torch.testing.assert_close(views.images[0, :, 0, -1], torch.tensor([0.0, 0.0, 1.0]))  # background
    focal = 0.5 * 8 / math.tan(0.5 * LEGO_FOV)
    torch.testing.assert_close(views.intrinsics[0], torch.tensor([[focal, 0, 4.0], [0, focal, 3.0], [0, 0, 1.0]]))
    E = views.extrinsics[0]
    origin = E[:3, 3]  # the world origin in camera coordinates: straight ahead at depth 4
    torch.testing.assert_close(origin, torch.tensor([0.0, 0.0, 4.0]))
    up = E[:3, :3] @ torch.tensor([0.0, 0.0, 1.0]) + E[:3, 3]  # world +z appears above the centre
    assert up[1] < 0 and abs(float(up[0])) < 1e-6
    right = E[:3, :3] @ torch.tensor([1.0, 0.0, 0.0]) + E[:3, 3]  # world +x appears to the right
    assert right[0] > 0


def test_rgb_png_and_explicit_extension_are_read(tmp_path):
    _write_real_format_scene(tmp_path, [_opengl_camera_on_minus_y(3.0)], mode="RGB")
    meta = json.loads((tmp_path / "transforms_test.json").read_text())
    meta["frames"][0]["file_path"] += ".png"
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))
    views = load_scene(tmp_path, split="test")
    torch.testing.assert_close(views.images[0, 0], torch.full((6, 8), 200 / 255))


def _render_scene(seed: int, views: int, size: int):
    g = generator_from(seed, 0)
    prims = make_scene(g)
    K, E = orbit_cameras(views, height=size, width=size, generator=g)
    return prims, K, E


def test_write_then_read_round_trip(tmp_path):
    prims, K, E = _render_scene(1, 3, 24)
    out = render(prims, K, E, height=24, width=24, supersample=2)
    write_scene(tmp_path, torch.cat([out.straight_rgb(), out.alpha[:, None]], 1), K, E)
    views = load_scene(tmp_path, background=(0.3, 0.5, 0.7))
    torch.testing.assert_close(views.intrinsics, K)
    torch.testing.assert_close(views.extrinsics, E, atol=1e-5, rtol=0)
    # 8-bit quantisation of straight colour and alpha: within ~2/255 of the float composite
    torch.testing.assert_close(views.images, out.composite((0.3, 0.5, 0.7)), atol=2.5 / 255, rtol=0)
    assert json.loads((tmp_path / "transforms_train.json").read_text())["frames"][1]["file_path"] == "./train/r_1"


def test_resize_scales_intrinsics_consistently_with_a_direct_render(tmp_path):
    prims, K, E = _render_scene(2, 2, 48)
    out = render(prims, K, E, height=48, width=48, supersample=2)
    write_scene(tmp_path, torch.cat([out.straight_rgb(), out.alpha[:, None]], 1), K, E)
    views = load_scene(tmp_path, resolution=(24, 32))  # also changes the aspect ratio
    expected_K = K.clone()
    expected_K[:, 0] *= 32 / 48
    expected_K[:, 1] *= 24 / 48
    torch.testing.assert_close(views.intrinsics, expected_K)
    direct = render(prims, views.intrinsics, E, height=24, width=32, supersample=4).composite((1.0, 1.0, 1.0))
    assert views.images.shape == (2, 3, 24, 32)
    assert float((views.images - direct).abs().mean()) < 0.02
    # a different (wrong) camera would disagree far more: shift the principal point by 3 pixels
    shifted = views.intrinsics.clone()
    shifted[:, 0, 2] += 3
    wrong = render(prims, shifted, E, height=24, width=32, supersample=4).composite((1.0, 1.0, 1.0))
    assert float((views.images - wrong).abs().mean()) > 2 * float((views.images - direct).abs().mean())


def test_write_rejects_intrinsics_that_camera_angle_x_cannot_express(tmp_path):
    K = torch.tensor([[[30.0, 0, 8], [0, 40.0, 8], [0, 0, 1]]])
    with pytest.raises(ValueError, match="fx == fy"):
        write_scene(tmp_path, torch.zeros(1, 4, 16, 16), K, torch.eye(4)[None])


def test_missing_transforms_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms_train.json"):
        read_cameras(tmp_path)


def test_bad_matrix_shape_names_file_and_frame(tmp_path):
    _write_real_format_scene(tmp_path, [_opengl_camera_on_minus_y(4.0), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with pytest.raises(ValueError, match=r"transforms_test.json: frame 1 \(./test/r_1\).*4x4"):
        read_cameras(tmp_path, split="test")


def test_missing_camera_angle_is_named(tmp_path):
    _write_real_format_scene(tmp_path, [_opengl_camera_on_minus_y(4.0)])
    meta = json.loads((tmp_path / "transforms_test.json").read_text())
    del meta["camera_angle_x"]
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="transforms_test.json: 'camera_angle_x'"):
        read_cameras(tmp_path, split="test")


def test_missing_and_unreadable_images_name_file_and_frame(tmp_path):
    _write_real_format_scene(tmp_path, [_opengl_camera_on_minus_y(4.0)] * 3)
    (tmp_path / "test" / "r_1.png").unlink()
    (tmp_path / "test" / "r_2.png").write_bytes(b"not a png at all")
    cameras = read_cameras(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match=r"transforms_test.json: frame 1: image .*r_1.png not found"):
        load_scene(tmp_path, split="test", frames=[0, 1])
    with pytest.raises(ValueError, match=r"transforms_test.json: frame 2: cannot read image .*r_2.png"):
        load_scene(tmp_path, split="test", frames=[2])
    assert len(cameras) == 3
