import math

import pytest
import torch

from seqrender.recon.camera_head import CameraHead, decode_pose_encoding
from seqrender.recon.gaussian_head import DepthHead, GaussianHead, gaussians_from_maps
from seqrender.recon.geometry import project_points, unproject_depth


def _random_cameras(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=-1)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).view(n, 3, 3)
    ext = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    ext[:, :3, :3] = rot
    ext[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    k = torch.tensor([[30.0, 0, 9.0], [0, 28.0, 6.5], [0, 0, 1]], dtype=torch.float64).repeat(n, 1, 1)
    k[:, 0, 2] += torch.rand(n, generator=g, dtype=torch.float64)
    return k, ext


def test_unproject_then_project_returns_pixel_centres():
    k, ext = _random_cameras(3)
    h, w = 5, 7
    depth = 0.5 + torch.rand(3, h, w, dtype=torch.float64)
    pts = unproject_depth(depth, k, ext)
    assert pts.shape == (3, h, w, 3)
    uv, z = project_points(pts.reshape(3, -1, 3), k, ext)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    expected = torch.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2)
    torch.testing.assert_close(uv, expected.expand(3, -1, -1), rtol=0, atol=1e-10)
    torch.testing.assert_close(z, depth.reshape(3, -1), rtol=0, atol=1e-10)
    # world point lies on the camera centre's ray: C = -Rᵀt, distance along the axis = depth
    centre = -(ext[:, :3, :3].transpose(1, 2) @ ext[:, :3, 3:]).squeeze(-1)
    axis = ext[:, 2, :3]
    torch.testing.assert_close(((pts - centre[:, None, None]) * axis[:, None, None]).sum(-1), depth)


def test_gaussians_from_maps_at_zero_output():
    b, s, h, w = 1, 2, 3, 4
    k, ext = _random_cameras(s, seed=1)
    k, ext = k.float()[None], ext.float()[None]
    depth = 1 + torch.rand(b, s, h, w)
    image = torch.rand(b, s, 3, h, w)
    g = gaussians_from_maps(torch.zeros(b, s, 14, h, w), depth, image, k, ext)
    n = s * h * w
    assert g.means.shape == (b, n, 3) and g.opacities.shape == (b, n)
    torch.testing.assert_close(g.means.view(b, s, h, w, 3), unproject_depth(depth, k, ext))
    torch.testing.assert_close(g.colors, image.permute(0, 1, 3, 4, 2).reshape(b, n, 3))
    torch.testing.assert_close(g.opacities, torch.full((b, n), 0.5))
    torch.testing.assert_close(g.rotations, torch.tensor([1.0, 0, 0, 0]).expand(b, n, 4))
    footprint = depth / (0.5 * (k[..., 0, 0] + k[..., 1, 1]))[..., None, None]
    torch.testing.assert_close(g.scales, (math.log(2) * footprint).reshape(b, n, 1).expand(b, n, 3))
    raw = torch.zeros(b, s, 14, h, w)
    raw[:, :, 0:3] = 0.25  # offset channels come first and add to the centres
    raw[:, :, 7:11] = torch.tensor([0.0, 3.0, 0.0, 0.0]).view(1, 1, 4, 1, 1)  # rotation channels
    g2 = gaussians_from_maps(raw, depth, image, k, ext)
    torch.testing.assert_close(g2.means, g.means + 0.25)
    torch.testing.assert_close(g2.rotations, (torch.tensor([1.0, 3.0, 0.0, 0.0]) / math.sqrt(10)).expand(b, n, 4))


def test_dpt_heads_shapes_and_zero_start():
    tokens = [torch.randn(3, 4, 32) for _ in range(2)]  # 2x2 patches of 7 px
    image = torch.rand(3, 3, 14, 14)
    d = DepthHead(32, num_layers=2, patch_size=7, features=8)(tokens, image)
    assert d.depth.shape == (3, 14, 14) and (d.depth > 0).all() and (d.confidence > 1).all()
    g = GaussianHead(32, num_layers=2, patch_size=7, features=8)(tokens, image)
    assert g.shape == (3, 14, 14, 14) and g.abs().max() == 0
    with pytest.raises(ValueError, match="token layers"):
        DepthHead(32, num_layers=3, patch_size=7)(tokens, image)


def test_pose_encoding_decodes_to_known_cameras():
    angle = 0.3
    quat_xyzw = torch.tensor([0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2)])  # rotation about +y
    enc = torch.cat([torch.tensor([1.0, -2.0, 3.0]), quat_xyzw, torch.tensor([math.radians(50), math.radians(70)])])
    ext, k = decode_pose_encoding(enc, height=40, width=60)
    c, s = math.cos(angle), math.sin(angle)
    torch.testing.assert_close(ext[:3, :3], torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]]))
    torch.testing.assert_close(ext[:3, 3], torch.tensor([1.0, -2.0, 3.0]))
    assert k[1, 1].item() == pytest.approx(20 / math.tan(math.radians(25)), rel=1e-5)
    assert k[0, 0].item() == pytest.approx(30 / math.tan(math.radians(35)), rel=1e-5)
    assert (k[0, 2].item(), k[1, 2].item()) == (30.0, 20.0)
    out = CameraHead(16)(torch.randn(2, 16))
    torch.testing.assert_close(out[:, 3:7], torch.tensor([0.0, 0, 0, 1]).expand(2, 4))
    torch.testing.assert_close(out[:, 7:], torch.full((2, 2), math.radians(60)))
