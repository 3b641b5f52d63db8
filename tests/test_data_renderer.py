"""The procedural renderer against closed-form geometry computed independently in float64."""

import math

import numpy as np
import pytest
import torch

from seqrender.experiments.data.cameras import look_at_w2c
from seqrender.experiments.data.primitives import Box, Cylinder, Sphere
from seqrender.experiments.data.renderer import Shading, render
from seqrender.experiments.data.scenes import rotation_matrix

FLAT = Shading(ambient=1.0, diffuse=0.0)  # shaded colour == texture colour
SIZE, FOCAL, DIST = 41, 60.0, 5.0


def _camera_on_z(distance: float = DIST, size: int = SIZE, focal: float = FOCAL):
    """Camera at world (0, 0, -distance) looking along +z: world and camera axes coincide."""
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])[None]
    E = torch.eye(4)[None].clone()
    E[0, 2, 3] = distance
    return K, E


def _pixel_radius(size: int = SIZE) -> np.ndarray:
    """Distance of each pixel centre from the principal point (image centre), (size, size)."""
    c = np.arange(size) + 0.5 - size / 2
    return np.hypot(c[None, :], c[:, None])


def _sphere(radius: float, centre=(0.0, 0.0, 0.0), colour=(0.2, 0.6, 0.9)) -> Sphere:
    return Sphere(torch.tensor(centre), torch.eye(3), radius=radius, colours=torch.tensor([colour]),
                  lon_cells=1, lat_cells=1)


def test_sphere_projects_to_disc_of_closed_form_radius():
    r = 1.3
    K, E = _camera_on_z()
    out = render([_sphere(r)], K, E, height=SIZE, width=SIZE, shading=FLAT)
    rho = FOCAL * r / math.sqrt(DIST**2 - r**2)  # tangent cone: f·tan(asin(r/d))
    dist = _pixel_radius()
    covered = out.alpha[0].numpy() > 0.5
    assert covered[dist < rho - 0.75].all()
    assert not covered[dist > rho + 0.75].any()


def test_supersampled_coverage_matches_disc_area():
    r = 1.3
    K, E = _camera_on_z()
    out = render([_sphere(r)], K, E, height=SIZE, width=SIZE, supersample=4, shading=FLAT)
    rho = FOCAL * r / math.sqrt(DIST**2 - r**2)
    assert float(out.alpha.sum()) == pytest.approx(math.pi * rho**2, rel=0.01)
    fractional = (out.alpha > 0.05) & (out.alpha < 0.95)
    assert fractional.any()  # anti-aliased edge


def test_sphere_depth_is_the_analytic_hit_depth():
    r = 1.3
    K, E = _camera_on_z()
    out = render([_sphere(r)], K, E, height=SIZE, width=SIZE, shading=FLAT)
    c = np.arange(SIZE) + 0.5 - SIZE / 2
    d = np.stack(np.broadcast_arrays(c[None, :] / FOCAL, c[:, None] / FOCAL, np.ones((SIZE, SIZE))), -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)  # unit ray directions, camera frame
    b = DIST * d[..., 2]  # sphere centre (0, 0, DIST) in camera coordinates
    disc = b**2 - (DIST**2 - r**2)
    hit = disc > 0
    z_depth = np.where(hit, (b - np.sqrt(np.clip(disc, 0, None))) * d[..., 2], 0.0)
    inside = _pixel_radius() < FOCAL * r / math.sqrt(DIST**2 - r**2) - 0.75
    np.testing.assert_allclose(out.depth[0].numpy()[inside], z_depth[inside], rtol=1e-5)
    assert (out.depth[0].numpy()[~hit] == 0).all()


def test_box_face_colour_and_depth_where_expected():
    half = torch.tensor([0.5, 0.7, 0.4])
    colours = torch.eye(6, 3) * 0.5 + torch.tensor([[0.1, 0.2, 0.3]]) * torch.arange(1, 7)[:, None] / 6
    box = Box(torch.zeros(3), torch.eye(3), half_extents=half, face_colours=colours)
    K, E = _camera_on_z()
    out = render([box], K, E, height=SIZE, width=SIZE, shading=FLAT)
    # the camera looks along +z, so it sees the −z face (index 5), a rectangle at z-depth DIST − 0.4
    depth_face = DIST - 0.4
    c = np.arange(SIZE) + 0.5 - SIZE / 2
    in_u = np.abs(c) < FOCAL * 0.5 / depth_face - 0.75
    in_v = np.abs(c) < FOCAL * 0.7 / depth_face - 0.75
    inside = in_v[:, None] & in_u[None, :]
    np.testing.assert_allclose(out.depth[0].numpy()[inside], depth_face, rtol=1e-5)
    rgb = out.rgb[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(rgb[inside], np.broadcast_to(colours[5].numpy(), rgb[inside].shape), atol=1e-6)
    outside = ~((np.abs(c)[:, None] < FOCAL * 0.7 / depth_face + 0.75) & (np.abs(c)[None, :] < FOCAL * 0.5 / depth_face + 0.75))
    assert (out.alpha[0].numpy()[outside] == 0).all()


@pytest.mark.parametrize("eye, face", [((5.0, 0.0, 0.0), 3), ((0.0, 5.0, 0.0), 0), ((0.0, 0.0, 5.0), 4)])
def test_rotated_box_shows_the_rotated_face(eye, face):
    # rotation by +90° about z: local +x -> world +y, local +y -> world −x (so world +x is local −y)
    rotation = rotation_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    colours = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
    box = Box(torch.zeros(3), rotation, half_extents=torch.tensor([0.6, 0.6, 0.6]), face_colours=colours)
    up = torch.tensor([0.0, 1.0, 0.0]) if eye[2] else torch.tensor([0.0, 0.0, 1.0])
    E = look_at_w2c(torch.tensor([eye]), torch.zeros(1, 3), up)
    K, _ = _camera_on_z(size=9)
    out = render([box], K, E, height=9, width=9, shading=FLAT)
    torch.testing.assert_close(out.rgb[0, :, 4, 4], colours[face])
    assert float(out.depth[0, 4, 4]) == pytest.approx(5.0 - 0.6, rel=1e-5)


@pytest.mark.parametrize("order", [0, 1])
def test_depth_test_keeps_the_nearer_primitive(order):
    near = _sphere(0.5, centre=(0.0, 0.0, -1.0), colour=(1.0, 0.0, 0.0))
    far = _sphere(1.0, centre=(0.0, 0.0, 1.0), colour=(0.0, 0.0, 1.0))
    K, E = _camera_on_z()
    prims = [near, far] if order == 0 else [far, near]
    out = render(prims, K, E, height=SIZE, width=SIZE, shading=FLAT)
    centre = SIZE // 2
    torch.testing.assert_close(out.rgb[0, :, centre, centre], torch.tensor([1.0, 0.0, 0.0]))
    assert float(out.depth[0, centre, centre]) == pytest.approx(DIST - 1.0 - 0.5, rel=1e-5)
    # far sphere's rim, outside the near sphere's silhouette, is blue
    rim = centre + 8
    torch.testing.assert_close(out.rgb[0, :, centre, rim], torch.tensor([0.0, 0.0, 1.0]))


def test_cylinder_seen_along_its_axis_shows_a_cap_disc():
    caps = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]])
    cyl = Cylinder(torch.zeros(3), torch.eye(3), radius=0.8, half_height=0.5,
                   side_colours=torch.tensor([[0.2, 0.2, 0.9]]), cap_colours=caps, stripes=2)
    K, E = _camera_on_z()  # looks along +z: sees the −z cap (cap_colours[1]) at depth DIST − 0.5
    out = render([cyl], K, E, height=SIZE, width=SIZE, shading=FLAT)
    rho = FOCAL * 0.8 / (DIST - 0.5)
    dist = _pixel_radius()
    inside, outside = dist < rho - 0.75, dist > rho + 0.75
    np.testing.assert_allclose(out.depth[0].numpy()[inside], DIST - 0.5, rtol=1e-5)
    rgb = out.rgb[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(rgb[inside], np.broadcast_to(caps[1].numpy(), rgb[inside].shape), atol=1e-6)
    assert (out.alpha[0].numpy()[outside] == 0).all()


def test_lambert_shading_of_a_face_towards_the_light():
    shading = Shading(ambient=0.3, diffuse=0.7, light_direction=(0.0, 0.0, -1.0))
    box = Box(torch.zeros(3), torch.eye(3), half_extents=torch.full((3,), 0.5), face_colours=torch.full((6, 3), 0.8))
    K, E = _camera_on_z(size=9)
    out = render([box], K, E, height=9, width=9, shading=shading)
    # the −z face's normal is the light direction: full Lambert term
    torch.testing.assert_close(out.rgb[0, :, 4, 4], torch.full((3,), 0.8 * (0.3 + 0.7)))
