"""Camera conventions the data loader relies on: OpenGL camera-to-world -> OpenCV world-to-camera
(seqrender.posenc.conventions), look-at, pixel rays."""

import math

import numpy as np
import torch

from seqrender.experiments.data.cameras import look_at_w2c, pixel_rays
from seqrender.posenc.conventions import intrinsics_from_fov, opencv_w2c_to_opengl_c2w, opengl_c2w_to_opencv_w2c


def _random_c2w(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    c2w[:3, :3] = q * torch.linalg.det(q)  # a proper rotation, orthonormal in float64
    c2w[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64) * 3
    return c2w


def test_point_in_front_of_opengl_camera_is_in_front_of_opencv_camera():
    c2w_gl = _random_c2w(0)
    # a point 2.5 units in front of the OpenGL camera (−z), right (+x) and up (+y) of the axis
    p_gl = torch.tensor([0.3, 0.4, -2.5, 1.0], dtype=torch.float64)
    p_world = c2w_gl @ p_gl
    p_cv = opengl_c2w_to_opencv_w2c(c2w_gl) @ p_world
    torch.testing.assert_close(p_cv, torch.tensor([0.3, -0.4, 2.5, 1.0], dtype=torch.float64))
    # pixel projection: OpenCV's u = fx·x/z + cx, v = fy·y/z + cy puts "up" above the centre
    K = intrinsics_from_fov(0.7, width=64, height=48).double()
    uvw = K @ p_cv[:3]
    u, v = float(uvw[0] / uvw[2]), float(uvw[1] / uvw[2])
    focal = 32 / math.tan(0.35)
    assert abs(u - (32 + focal * 0.3 / 2.5)) < 1e-4 and abs(v - (24 - focal * 0.4 / 2.5)) < 1e-4


def test_conversion_round_trip_and_batch():
    c2w = torch.stack([_random_c2w(s) for s in range(5)])
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    torch.testing.assert_close(opencv_w2c_to_opengl_c2w(w2c), c2w)
    torch.testing.assert_close(torch.linalg.det(w2c[:, :3, :3]), torch.ones(5, dtype=torch.float64), atol=1e-6, rtol=0)
    # the camera centre is the same point in both conventions
    centre = -w2c[:, :3, :3].transpose(1, 2) @ w2c[:, :3, 3:]
    torch.testing.assert_close(centre[..., 0], c2w[:, :3, 3], atol=1e-5, rtol=0)


def test_look_at_targets_the_principal_point_and_keeps_up_up():
    eye = torch.tensor([[3.0, -2.0, 1.5], [0.5, 4.0, -1.0]])
    target = torch.tensor([[0.2, 0.1, 0.3], [0.0, 0.0, 0.0]])
    E = look_at_w2c(eye, target, torch.tensor([0.0, 0.0, 1.0]))
    R, t = E[:, :3, :3], E[:, :3, 3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2))
    cam_target = (R @ target[..., None])[..., 0] + t
    torch.testing.assert_close(cam_target[:, :2], torch.zeros(2, 2), atol=1e-5, rtol=0)
    assert (cam_target[:, 2] > 0).all()
    above = (R @ (target + torch.tensor([0.0, 0.0, 0.1]))[..., None])[..., 0] + t
    assert (above[:, 1] < cam_target[:, 1]).all()  # image y points down


def test_pixel_rays_reproject_to_their_pixel_centres():
    K = torch.tensor([[50.0, 0.0, 17.0], [0.0, 45.0, 11.0], [0.0, 0.0, 1.0]])[None]
    E = look_at_w2c(torch.tensor([[2.0, 3.0, 1.0]]), torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))
    origins, dirs, z_per_distance = pixel_rays(K, E, height=20, width=30, supersample=2)
    points = origins + 3.7 * dirs  # (1, 40, 60, 3)
    cam = torch.einsum("ij,hwj->hwi", E[0, :3, :3], points[0]) + E[0, :3, 3]
    uv = torch.einsum("ij,hwj->hwi", K[0], cam)
    uv = uv[..., :2] / uv[..., 2:]
    expected_u = (torch.arange(60) + 0.5) / 2
    expected_v = (torch.arange(40) + 0.5) / 2
    torch.testing.assert_close(uv[..., 0], expected_u[None, :].expand(40, 60), atol=1e-4, rtol=0)
    torch.testing.assert_close(uv[..., 1], expected_v[:, None].expand(40, 60), atol=1e-4, rtol=0)
    torch.testing.assert_close(cam[..., 2], 3.7 * z_per_distance[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(dirs.norm(dim=-1).numpy(), 1.0, atol=1e-6)


def test_fov_spans_the_image_width():
    K = intrinsics_from_fov(0.9, width=80, height=60)
    # the left and right image borders (u = 0, u = W) are ±fov/2 from the optical axis
    assert abs(math.atan((80 - K[0, 2]) / K[0, 0]) - 0.45) < 1e-6
    assert abs(math.atan(K[0, 2] / K[0, 0]) - 0.45) < 1e-6
    assert float(K[1, 1]) == float(K[0, 0]) and float(K[1, 2]) == 30.0
