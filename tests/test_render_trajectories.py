"""Camera trajectories against geometry computed independently in float64."""
import json
import math

import numpy as np
import pytest
import torch

from seqrender.experiments.data import look_at_w2c
from seqrender.experiments.render import RenderError
from seqrender.experiments.render.trajectories import make_trajectory, scene_frame
from seqrender.posenc.conventions import opencv_w2c_to_opengl_c2w

UP = torch.tensor([0.0, 0.0, 1.0])


def look_at(eyes, target=(0.2, -0.1, 0.3)):
    eyes = torch.tensor(eyes, dtype=torch.float64)
    return look_at_w2c(eyes, torch.tensor(target, dtype=torch.float64).expand_as(eyes), UP.double()).float()


def centres(w2c):
    w2c = np.asarray(w2c, dtype=np.float64)
    return -np.einsum("vji,vj->vi", w2c[:, :3, :3], w2c[:, :3, 3])


def test_scene_centre_is_where_the_optical_axes_meet():
    cams = look_at([[3.0, 0.5, 1.0], [-1.0, 2.5, 0.4], [0.5, -3.0, 2.0]])
    assert np.allclose(scene_frame(cams).centre.numpy(), [0.2, -0.1, 0.3], atol=1e-4)


@pytest.mark.parametrize("views", [5, 12])
def test_orbit_circles_the_centre_at_the_first_cameras_height_and_distance(views):
    target = np.array([0.2, -0.1, 0.3])
    start = look_at([[2.0, 1.0, 1.5], [-2.0, 0.3, 0.8]])
    traj = make_trajectory("orbit", start, views, up=UP).double().numpy()
    c = centres(traj)
    offset = c - target
    radius0 = np.linalg.norm(centres(start.numpy())[0] - target)
    assert np.allclose(np.linalg.norm(offset, axis=1), radius0, atol=1e-4)
    assert np.allclose(offset[:, 2], offset[0, 2], atol=1e-4)                  # same height (z up)
    assert np.allclose(traj[0], start[0].double().numpy(), atol=1e-4)          # starts at the first camera
    azimuth = np.unwrap(np.arctan2(offset[:, 1], offset[:, 0]))
    assert np.allclose(np.abs(np.diff(azimuth)), 2 * math.pi / views, atol=1e-4)
    # every camera looks at the centre: it lies on the optical axis (camera x = y = 0, z > 0)
    in_cam = np.einsum("vij,j->vi", traj[:, :3, :3], target) + traj[:, :3, 3]
    assert np.allclose(in_cam[:, :2], 0, atol=1e-4) and (in_cam[:, 2] > 0).all()


def test_spiral_swings_the_elevation():
    start = look_at([[3.0, 0.0, 1.0]], target=(0.0, 0.0, 0.0))
    c = centres(make_trajectory("spiral", start, 8, up=UP, spiral_amplitude_deg=10.0).numpy())
    elevation = np.degrees(np.arcsin(c[:, 2] / np.linalg.norm(c, axis=1)))
    base = math.degrees(math.atan2(1.0, 3.0))
    assert np.allclose(elevation, base + 10 * np.sin(2 * np.pi * np.arange(8) / 8), atol=1e-3)


def test_interpolate_passes_through_the_inputs_with_half_angle_midpoints():
    inputs = look_at([[3.0, 0.0, 1.0], [0.0, 3.0, 1.0], [-3.0, 0.5, 2.0]])
    traj = make_trajectory("interpolate", inputs, 5).double().numpy()            # s = 0, .5, 1, 1.5, 2
    assert np.allclose(traj[[0, 2, 4]], inputs.double().numpy(), atol=1e-5)
    c_in, c = centres(inputs.numpy()), centres(traj)
    assert np.allclose(c[1], (c_in[0] + c_in[1]) / 2, atol=1e-5)
    r0, r1, mid = inputs[0, :3, :3].double().numpy(), inputs[1, :3, :3].double().numpy(), traj[1, :3, :3]
    angle = lambda a, b: np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1)))  # noqa: E731
    assert angle(r0, mid) == pytest.approx(angle(r0, r1) / 2, abs=1e-4)
    assert angle(mid, r1) == pytest.approx(angle(r0, r1) / 2, abs=1e-4)


def test_poses_files_in_both_layouts(tmp_path):
    cams = look_at([[3.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    opencv = tmp_path / "w2c.json"
    opencv.write_text(json.dumps({"extrinsics": cams.tolist()}))
    blender = tmp_path / "transforms.json"
    c2w = opencv_w2c_to_opengl_c2w(cams.double())
    blender.write_text(json.dumps({"frames": [{"transform_matrix": m.tolist()} for m in c2w]}))
    for path in (opencv, blender):
        assert torch.allclose(make_trajectory(str(path), cams, 99), cams, atol=1e-6)


@pytest.mark.parametrize("name, match", [("zigzag", "unknown trajectory 'zigzag'"),
                                         ("bad.json", "not a rigid 4x4 transform")])
def test_bad_trajectories_are_one_line(tmp_path, monkeypatch, name, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"extrinsics": [[[2.0, 0, 0, 0]] * 4]}))
    with pytest.raises(RenderError, match=match) as err:
        make_trajectory(name, look_at([[3.0, 0.0, 1.0]]), 4)
    assert "\n" not in str(err.value)
