import math

import numpy as np
import pytest
import torch

from seqrender.recon.rasterizer import Gaussians, RasterConfig, rasterize, render_gaussians


def _look_extrinsics(angle: float, dist: float = 4.0) -> torch.Tensor:
    """World-to-camera for a camera on a circle around the origin, looking at it (OpenCV axes)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)
    e = torch.eye(4, dtype=torch.float64)
    e[:3, :3] = rot
    e[:3, 3] = torch.tensor([0.0, 0.0, dist], dtype=torch.float64)
    return e


def _scene(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 1.5
    scales = 0.1 + 0.3 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    opac = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    return means, scales, quats, opac, colors


def _reference_render(means, scales, quats, opac, colors, ext, k, h, w, cfg):
    """Plain per-pixel 3DGS in numpy float64, written from the paper's equations."""
    means, scales, quats, opac, colors, ext, k = (t.detach().numpy() for t in (means, scales, quats, opac, colors, ext, k))
    r_cam, t_cam = ext[:3, :3], ext[:3, 3]
    items = []
    for i in range(len(means)):
        q = quats[i] / np.linalg.norm(quats[i])
        a, b, c, d = q
        rot = np.array([
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ])
        sigma = rot @ np.diag(scales[i] ** 2) @ rot.T
        x, y, z = r_cam @ means[i] + t_cam
        if z <= cfg.near:
            continue
        jx, jy = x, y
        if cfg.fov_clamp is not None:  # 3DGS: x/z, y/z clamped to 1.3·tan(fov/2) (principal point centred)
            lim_x, lim_y = cfg.fov_clamp * w / (2 * k[0, 0]), cfg.fov_clamp * h / (2 * k[1, 1])
            jx, jy = np.clip(x / z, -lim_x, lim_x) * z, np.clip(y / z, -lim_y, lim_y) * z
        jac = np.array([[k[0, 0] / z, 0, -k[0, 0] * jx / z**2], [0, k[1, 1] / z, -k[1, 1] * jy / z**2]])
        cov = jac @ r_cam @ sigma @ r_cam.T @ jac.T + cfg.blur * np.eye(2)
        centre = np.array([k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]])
        items.append((z, centre, np.linalg.inv(cov), opac[i], colors[i]))
    items.sort(key=lambda it: it[0])
    color = np.zeros((3, h, w))
    alpha_img = np.zeros((1, h, w))
    depth_img = np.zeros((1, h, w))
    for row in range(h):
        for col in range(w):
            p = np.array([col + 0.5, row + 0.5])
            trans = 1.0
            for z, centre, conic, o, rgb in items:
                dd = p - centre
                alpha = min(cfg.alpha_max, o * math.exp(-0.5 * dd @ conic @ dd))
                if alpha < cfg.alpha_min:
                    continue
                if cfg.t_min is not None and trans * (1 - alpha) < cfg.t_min:
                    break
                color[:, row, col] += trans * alpha * rgb
                depth_img[0, row, col] += trans * alpha * z
                trans *= 1 - alpha
            alpha_img[0, row, col] = 1 - trans
    return color, alpha_img, depth_img


K = torch.tensor([[9.0, 0, 4.0], [0, 8.0, 3.5], [0, 0, 1]], dtype=torch.float64)


@pytest.mark.parametrize("chunk", [1 << 22, 13])
def test_matches_plain_per_pixel_reference(chunk):
    scene = _scene()
    scene[0][0] = torch.tensor([0.1, 0.0, -3.0], dtype=torch.float64)  # behind the near plane
    scene[0][1] = torch.tensor([-2.2, 0.3, 0.5], dtype=torch.float64)  # large, centred left of the image:
    scene[1][1] = torch.tensor([0.9, 0.9, 0.2], dtype=torch.float64)   # its Jacobian is clamped
    cfg = RasterConfig(chunk_elements=chunk)
    ext = _look_extrinsics(0.3)
    out = rasterize(*scene, ext, K, height=7, width=8, config=cfg)
    ref = _reference_render(*scene, ext, K, 7, 8, cfg)
    for got, want in zip((out.color, out.alpha, out.depth), ref):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    assert out.alpha.max() > 0.5


def test_early_cutoff_matches_reference_on_opaque_stack():
    n = 5
    means = torch.zeros(n, 3, dtype=torch.float64)
    means[:, 2] = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    scales = torch.full((n, 3), 0.8, dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).expand(n, 4)
    opac = torch.full((n,), 0.99, dtype=torch.float64)
    colors = torch.rand(n, 3, dtype=torch.float64)
    ext = _look_extrinsics(0.0)
    for t_min in (1e-4, 0.05, None):
        cfg = RasterConfig(t_min=t_min, background=(0.2, 0.3, 0.4))
        out = rasterize(means, scales, quats, opac, colors, ext, K, height=6, width=6, config=cfg)
        color, alpha, depth = _reference_render(means, scales, quats, opac, colors, ext, K, 6, 6, cfg)
        bg = np.array(cfg.background).reshape(3, 1, 1)
        np.testing.assert_allclose(out.color.numpy(), color + (1 - alpha) * bg, atol=1e-10)
        np.testing.assert_allclose(out.depth.numpy(), depth, atol=1e-10)


def test_isotropic_blob_has_analytic_sigma():
    f, z, s = 20.0, 5.0, 0.5
    h = w = 41
    k = torch.tensor([[f, 0, 20.5], [0, f, 20.5], [0, 0, 1]], dtype=torch.float64)
    ext = torch.eye(4, dtype=torch.float64)
    mean = torch.tensor([[0.4, -0.2, z]], dtype=torch.float64)
    cfg = RasterConfig(blur=0.0, alpha_min=0.0, t_min=None)
    args = (mean, torch.full((1, 3), s, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
            torch.tensor([0.5], dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64), ext, k)
    out = rasterize(*args, height=h, width=w, config=cfg)
    a = out.alpha[0]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    mass = a.sum()
    cx, cy = (a * xs).sum() / mass, (a * ys).sum() / mass
    assert cx.item() == pytest.approx(f * 0.4 / z + 20.5, abs=1e-6)
    assert cy.item() == pytest.approx(f * -0.2 / z + 20.5, abs=1e-6)
    # EWA: J = [[f/z, 0, -f·x/z²], ...] -> σ_x = (f·σ/z)·sqrt(1 + (x/z)²); f·σ/z on the axis
    var_x = (a * (xs - cx) ** 2).sum() / mass
    var_y = (a * (ys - cy) ** 2).sum() / mass
    assert math.sqrt(var_x.item()) == pytest.approx(f * s / z * math.sqrt(1 + (0.4 / z) ** 2), rel=1e-6)
    assert math.sqrt(var_y.item()) == pytest.approx(f * s / z * math.sqrt(1 + (0.2 / z) ** 2), rel=1e-6)
    centred = rasterize(torch.tensor([[0.0, 0.0, z]], dtype=torch.float64), *args[1:], height=h, width=w, config=cfg)
    a0 = centred.alpha[0]
    var0 = (a0 * (xs - 20.5) ** 2).sum() / a0.sum()
    assert math.sqrt(var0.item()) == pytest.approx(f * s / z, rel=1e-6)
    assert a0.max().item() == pytest.approx(0.5, abs=1e-12)  # peak = opacity at the projected centre
    np.testing.assert_allclose((out.depth / out.alpha.clamp_min(1e-12))[0].numpy()[a.numpy() > 1e-6], z, rtol=1e-9)


def test_gradcheck_tiny_scene():
    scene = [t.clone().requires_grad_() for t in _scene(n=3, seed=4)]
    ext = _look_extrinsics(0.2)
    cfg = RasterConfig(alpha_min=0.0, t_min=None)

    def fn(*args):
        r = rasterize(*args, ext, K, height=4, width=5, config=cfg)
        return r.color, r.alpha, r.depth

    assert torch.autograd.gradcheck(fn, tuple(scene), eps=1e-6, atol=1e-6, fast_mode=True)


def test_render_gaussians_batches_views():
    scene = _scene(n=4, seed=2)
    g = Gaussians(*(t.float()[None].expand(2, *t.shape) for t in scene))
    ext = torch.stack([_look_extrinsics(0.1), _look_extrinsics(-0.4)]).float()[None].expand(2, 2, 4, 4)
    k = K.float()[None, None].expand(2, 2, 3, 3)
    out = render_gaussians(g, ext, k, height=6, width=7)
    assert out.color.shape == (2, 2, 3, 6, 7) and out.depth.shape == (2, 2, 1, 6, 7)
    single = rasterize(*(t.float() for t in scene), ext[0, 1], k[0, 1], height=6, width=7)
    torch.testing.assert_close(out.color[1, 1], single.color)
    with pytest.raises(ValueError, match="extrinsics"):
        render_gaussians(g, ext[:1], k, height=6, width=7)
