"""Chamfer distance and volumetric IoU (Kaleido Table 3) on shapes with closed-form answers."""

import math

import pytest
import torch

from seqrender.recon.metrics import chamfer_distance, volume_iou, voxel_centres


def lattice(n: int, spacing: float) -> torch.Tensor:
    """(n³, 3) float64 points of a cubic lattice."""
    axis = torch.arange(n, dtype=torch.float64) * spacing
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def fibonacci_sphere(n: int, radius: float) -> torch.Tensor:
    """(n, 3) float64 points on a sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = (1 - z * z).sqrt()
    return radius * torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)


@pytest.mark.parametrize("chunk", [4096, 7])
def test_chamfer_of_a_shifted_lattice_is_the_shift(chunk):
    """Shift < half the spacing: every point's nearest neighbour is its own shifted copy."""
    a = lattice(5, 0.2)
    shift = torch.tensor([0.03, -0.04, 0.0], dtype=torch.float64)  # ‖shift‖ = 0.05
    b = a + shift
    both = torch.stack([a, a]), torch.stack([b, a])
    out = chamfer_distance(*both, chunk=chunk)
    torch.testing.assert_close(out, torch.tensor([0.05, 0.0], dtype=torch.float64))
    torch.testing.assert_close(chamfer_distance(*both, squared=True, chunk=chunk)[0],
                               torch.tensor(0.0025, dtype=torch.float64))


def test_chamfer_point_to_sphere_and_one_outlier():
    sphere = fibonacci_sphere(500, 0.7)[None]
    centre = torch.zeros(1, 1, 3, dtype=torch.float64)
    # accuracy: the centre is 0.7 from every sphere point; completeness: every sphere point is 0.7 away
    torch.testing.assert_close(chamfer_distance(centre, sphere), torch.tensor([0.7], dtype=torch.float64))
    # a cloud vs itself plus one point 2.0 away from all: ½·(0 + 2.0 / (N + 1))
    cloud = lattice(4, 0.1)[None]
    far = torch.tensor([[[0.15, 0.15, 2.3]]], dtype=torch.float64)
    extra = torch.cat([cloud, far], dim=1)
    dist = (far[0, 0] - cloud[0]).norm(dim=-1).min()
    expected = 0.5 * dist / extra.shape[1]
    torch.testing.assert_close(chamfer_distance(cloud, extra), expected[None])
    torch.testing.assert_close(chamfer_distance(extra, cloud), expected[None])  # symmetric


def test_iou_of_voxel_aligned_boxes_is_exact():
    centres = voxel_centres(16, 0.0, 1.0, dtype=torch.float64)  # voxel edges at multiples of 1/16

    def box(low, high):
        return ((centres >= low) & (centres < high)).all(dim=-1)

    a, b = box(0.0, 0.5), box(0.25, 0.75)  # 8³ voxels each, overlap 4³
    out = volume_iou(torch.stack([a, a, a]), torch.stack([b, a, ~a]))
    torch.testing.assert_close(out, torch.tensor([64 / (2 * 512 - 64), 1.0, 0.0], dtype=torch.float64))
    empty = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    assert volume_iou(empty, empty).item() == 1.0


def test_iou_of_two_balls_matches_the_lens_volume():
    """Two balls of radius r, centres d apart: intersection π(4r + d)(2r − d)²/12."""
    r, d = 0.5, 0.4
    centres = voxel_centres(96, dtype=torch.float64)
    offset = torch.tensor([d / 2, 0.0, 0.0], dtype=torch.float64)
    a = ((centres - offset).norm(dim=-1) <= r)[None]
    b = ((centres + offset).norm(dim=-1) <= r)[None]
    lens = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    expected = lens / (2 * 4 / 3 * math.pi * r**3 - lens)
    assert volume_iou(a, b).item() == pytest.approx(expected, rel=0.02)


def test_geometry_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="point clouds must be"):
        chamfer_distance(torch.zeros(2, 5, 3), torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match="must not be empty"):
        chamfer_distance(torch.zeros(1, 0, 3), torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="occupancy grids"):
        volume_iou(torch.zeros(1, 4, 4, 4, dtype=torch.bool), torch.zeros(1, 4, 4, 5, dtype=torch.bool))
