"""Plücker rays: geometry against back-projection, moment invariance, orders and conventions."""

import math

import pytest
import torch

from seqrender.posenc import (
    convert_plucker_order,
    intrinsics_from_fov,
    invert_se3,
    opencv_w2c_to_opengl_c2w,
    opengl_c2w_to_opencv_w2c,
    plucker_rays,
    random_se3,
)


def intrinsics(h, w, f=1.3):
    return torch.tensor([[f * w, 0, w / 2], [0, f * w, h / 2], [0, 0, 1]], dtype=torch.float64)


@pytest.mark.parametrize("hw", [(4, 6), (7, 3)])
def test_rays_pass_through_backprojected_points(hw):
    gen = torch.Generator().manual_seed(0)
    h, w = hw
    ext = random_se3(2, 3, generator=gen, dtype=torch.float64)
    k = intrinsics(h, w).expand(2, 3, 3, 3)
    rays = plucker_rays(k, ext, h, w)
    d, m = rays[..., :3], rays[..., 3:]
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(2, 3, h, w, dtype=torch.float64))
    # back-project pixel (row i, col j) centre at depth z: X_cam = z·K⁻¹(j+.5, i+.5, 1); X_world = E⁻¹ X_cam
    i, j, z = 2, 1, 3.7
    x_cam = z * torch.linalg.solve(k[0, 0], torch.tensor([j + 0.5, i + 0.5, 1.0], dtype=torch.float64))
    x_world = (invert_se3(ext) @ torch.cat([x_cam, torch.ones(1, dtype=torch.float64)]))[..., :3]
    # a point X lies on the line iff X × d = m
    torch.testing.assert_close(torch.linalg.cross(x_world, d[:, :, i, j], dim=-1), m[:, :, i, j])
    # and the point is in front of the camera along d
    centre = invert_se3(ext)[..., :3, 3]
    assert ((x_world - centre) * d[:, :, i, j]).sum(-1).gt(0).all()


def test_moment_invariant_when_centre_slides_along_ray():
    gen = torch.Generator().manual_seed(1)
    ext = random_se3(1, generator=gen, dtype=torch.float64)[0]
    k = intrinsics(3, 3)
    rays = plucker_rays(k, ext, 3, 3)
    d = rays[1, 1, :3]  # centre pixel of a 3×3 grid with centred principal point: the optical axis
    c2w = invert_se3(ext)
    moved = c2w.clone()
    moved[:3, 3] += 2.5 * d
    rays_moved = plucker_rays(k, invert_se3(moved), 3, 3)
    torch.testing.assert_close(rays_moved[1, 1], rays[1, 1])
    torch.testing.assert_close(rays_moved[..., :3], rays[..., :3])


def test_relative_to_first_camera_and_world_invariance():
    gen = torch.Generator().manual_seed(2)
    ext = random_se3(1, 4, generator=gen, dtype=torch.float64)
    k = intrinsics(2, 5).expand(1, 4, 3, 3)
    rel = plucker_rays(k, ext, 2, 5, relative=True)
    g = random_se3(1, 1, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(plucker_rays(k, ext @ g, 2, 5, relative=True), rel)
    # the first camera sits at the origin looking down +z: moments vanish, directions are K⁻¹ rays
    torch.testing.assert_close(rel[0, 0, ..., 3:], torch.zeros(2, 5, 3, dtype=torch.float64))
    plain = plucker_rays(k[:, :1], torch.eye(4, dtype=torch.float64).expand(1, 1, 4, 4), 2, 5)
    torch.testing.assert_close(rel[:, :1], plain)


def test_order_conversion():
    ext = random_se3(2, dtype=torch.float64)
    k = intrinsics(3, 4).expand(2, 3, 3)
    dm = plucker_rays(k, ext, 3, 4, order="dm")
    md = plucker_rays(k, ext, 3, 4, order="md")
    torch.testing.assert_close(md[..., :3], dm[..., 3:])
    torch.testing.assert_close(convert_plucker_order(dm, source="dm", target="md"), md)
    torch.testing.assert_close(convert_plucker_order(md, source="md", target="dm"), dm)
    with pytest.raises(ValueError, match="order"):
        plucker_rays(k, ext, 3, 4, order="xyz")


def test_opengl_to_opencv_conversion():
    gen = torch.Generator().manual_seed(3)
    c2w_gl = random_se3(5, generator=gen, dtype=torch.float64)
    w2c = opengl_c2w_to_opencv_w2c(c2w_gl)
    centre, rot = c2w_gl[:, :3, 3], c2w_gl[:, :3, :3]
    # a point straight ahead of an OpenGL camera (along −z_gl) and one above it (along +y_gl)
    ahead = centre + 2.0 * -rot[:, :, 2]
    above = centre + 0.5 * rot[:, :, 1] + 2.0 * -rot[:, :, 2]
    to_cam = lambda p: (w2c[:, :3, :3] @ p[..., None])[..., 0] + w2c[:, :3, 3]
    torch.testing.assert_close(to_cam(ahead), torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64).expand(5, 3))
    torch.testing.assert_close(to_cam(above), torch.tensor([0.0, -0.5, 2.0], dtype=torch.float64).expand(5, 3))
    torch.testing.assert_close(opencv_w2c_to_opengl_c2w(w2c), c2w_gl)


def test_intrinsics_from_fov_edge_ray():
    k = intrinsics_from_fov(math.radians(60), 64, 48).double()
    edge = torch.linalg.solve(k, torch.tensor([64.0, 24.0, 1.0], dtype=torch.float64))
    assert math.isclose(math.atan(edge[0].item()), math.radians(30), rel_tol=1e-6)
    assert k[0, 0] == k[1, 1]


def test_plucker_float16_and_gradients():
    gen = torch.Generator().manual_seed(4)
    ext = random_se3(1, 2, dtype=torch.float32, generator=gen).requires_grad_()
    k = intrinsics(4, 4).float().expand(1, 2, 3, 3)
    rays16 = plucker_rays(k.half(), ext.half(), 4, 4)
    assert rays16.dtype == torch.float32 and torch.isfinite(rays16).all()
    plucker_rays(k, ext, 4, 4, relative=True).square().sum().backward()
    assert torch.isfinite(ext.grad).all()
