"""The rasteriser's projection against gsplat's pure-torch reference (issue 10, item 6), including
the 3DGS/gsplat Jacobian clamp at 1.3× the half field of view, with random Gaussians many of which
are centred outside the image. gsplat is a test dependency (requirements-test.txt); its `_torch_impl`
functions run on CPU. Where gsplat cannot be imported the parity test skips with the reason."""

import math

import pytest
import torch

from seqrender.recon.rasterizer import RasterConfig, covariance_3d, project_gaussians, rasterize

H, W = 24, 32
K = torch.tensor([[30.0, 0, 13.0], [0, 28.0, 14.5], [0, 0, 1]], dtype=torch.float64)  # off-centre


def random_gaussians(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    cam = torch.randn(n, 3, generator=g, dtype=torch.float64)
    cam[:, 2] = 1.0 + 4.0 * torch.rand(n, generator=g, dtype=torch.float64)
    cam[:, :2] *= 1.5 * cam[:, 2:]  # x/z, y/z ~ N(0, 1.5²): many far outside the ~±0.5 half-FoV
    scales = 0.05 + torch.rand(n, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return cam, scales, quats


def look_extrinsics(seed=1):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    ext = torch.eye(4, dtype=torch.float64)
    ext[:3, :3] = q * torch.det(q)
    ext[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    return ext


def test_projection_matches_gsplat_torch_reference():
    impl = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat does not import here (pip install gsplat)")
    cam, scales, quats = random_gaussians()
    ext = look_extrinsics()
    means = (cam - ext[:3, 3]) @ ext[:3, :3]  # world points that land at `cam`
    covars, _ = impl._quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    torch.testing.assert_close(covariance_3d(scales, quats), covars)
    means_c, covars_c = impl._world_to_cam(means, covars, ext[None])
    want_centres, want_cov = impl._persp_proj(means_c, covars_c, K[None], W, H)
    centres, cov2d, depth = project_gaussians(means, covars, ext, K, blur=0.0, image_size=(H, W),
                                              fov_clamp=RasterConfig().fov_clamp)
    torch.testing.assert_close(centres, want_centres[0])
    torch.testing.assert_close(cov2d, want_cov[0])
    torch.testing.assert_close(depth, means_c[0, :, 2])
    unclamped = project_gaussians(means, covars, ext, K, blur=0.0)[1]
    assert (unclamped - want_cov[0]).abs().max() > 1.0  # the clamp matters for these Gaussians


def test_large_offscreen_gaussian_alpha_depends_on_the_clamp():
    """A Gaussian long in depth, centred left of the image: its depth extent projects through the
    x/z column of the Jacobian, so without the clamp its footprint in the image differs."""
    ext = torch.eye(4, dtype=torch.float64)
    k = torch.tensor([[20.0, 0, 16.0], [0, 20.0, 12.0], [0, 0, 1]], dtype=torch.float64)
    args = (torch.tensor([[-3.0, 0.0, 2.0]], dtype=torch.float64), torch.tensor([[0.3, 0.3, 1.5]], dtype=torch.float64),
            torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64),
            torch.ones(1, 3, dtype=torch.float64), ext, k)
    clamped = rasterize(*args, height=H, width=W).alpha
    free = rasterize(*args, height=H, width=W, config=RasterConfig(fov_clamp=None)).alpha
    assert clamped.max() > 0.1 and (clamped - free).abs().max() > 0.1


def test_fov_clamp_is_checked():
    with pytest.raises(ValueError, match="fov_clamp must be >= 1 or None"):
        RasterConfig(fov_clamp=0.5)
