import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from seqrender.recon.metrics import LPIPS, LPIPSUnavailable, load_lpips, lpips, psnr, ssim


# ---------------------------------------------------------------- PSNR


def test_psnr_hand_made_cases():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1, :, :2] = 1.0  # half the pixels off by 1 -> MSE 0.5 -> 10·log10(2)
    out = psnr(b, a)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(20.0, abs=1e-4)
    assert out[1].item() == pytest.approx(10 * math.log10(2), abs=1e-5)
    # max_val scales the peak: 255-range image off by 2.55 everywhere -> 40 dB
    assert psnr(a[:1] + 2.55, a[:1], max_val=255.0).item() == pytest.approx(40.0, abs=1e-3)
    assert torch.isinf(psnr(a, a)).all()


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), window=4)


# ---------------------------------------------------------------- SSIM


def _ssim_reference(x: np.ndarray, y: np.ndarray, window=11, sigma=1.5, max_val=1.0) -> float:
    """Float64 Wang et al. SSIM with scipy's Gaussian filter, valid region, mean over channels."""
    r = window // 2
    filt = lambda im: ndimage.gaussian_filter(im, sigma, truncate=r / sigma, mode="reflect")[r:-r or None, r:-r or None]
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    vals = []
    for a, b in zip(x, y):
        mx, my = filt(a), filt(b)
        sxx = filt(a * a) - mx * mx
        syy = filt(b * b) - my * my
        sxy = filt(a * b) - mx * my
        m = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))


def test_ssim_matches_scipy_float64_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 24, 20, generator=g)
    y = (x + 0.2 * torch.randn(3, 3, 24, 20, generator=g)).clamp(0, 1)
    y[2] = torch.rand(3, 24, 20, generator=g)  # unrelated image: low SSIM
    out = ssim(y, x)
    assert out.shape == (3,)
    for i in range(3):
        ref = _ssim_reference(y[i].double().numpy(), x[i].double().numpy())
        assert out[i].item() == pytest.approx(ref, abs=2e-5)
    assert out[2] < 0.2 < out[0]


def test_ssim_other_window_and_range():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 15, 15, generator=g) * 255
    y = (x + 20 * torch.randn(1, 1, 15, 15, generator=g)).clamp(0, 255)
    out = ssim(y.double(), x.double(), max_val=255.0, window=7, sigma=1.0)
    ref = _ssim_reference(y[0].double().numpy(), x[0].double().numpy(), window=7, sigma=1.0, max_val=255.0)
    assert out.item() == pytest.approx(ref, abs=1e-10)


def test_ssim_identity_and_known_values():
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    # constant images a, b: variances vanish, SSIM = (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    out = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert out.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    # negated contrast around the same mean: luminance 1, structure term (-σ² + C2/2)/(σ² + C2/2)
    checker = (torch.arange(16).view(16, 1) + torch.arange(16)) % 2
    p = 0.5 + 0.25 * (2 * checker - 1).float()
    q = 1.0 - p
    val = ssim(p.expand(1, 1, 16, 16), q.expand(1, 1, 16, 16)).item()
    ref = _ssim_reference(p[None].double().numpy(), q[None].double().numpy())
    assert val == pytest.approx(ref, abs=1e-5) and val < -0.9


def test_ssim_small_images_shrink_window():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 6, 9, generator=g)
    y = torch.rand(1, 3, 6, 9, generator=g)
    out = ssim(x, y)  # window 11 -> 5 (largest odd ≤ 6)
    ref = _ssim_reference(x[0].double().numpy(), y[0].double().numpy(), window=5)
    assert out.item() == pytest.approx(ref, abs=2e-5)
    assert torch.isfinite(ssim(torch.rand(2, 3, 1, 1), torch.rand(2, 3, 1, 1))).all()


# ---------------------------------------------------------------- LPIPS


def _random_lpips_state(net: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = LPIPS(net)
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("scaling_layer"):
            state[k] = v.clone()
        elif k.startswith("lin"):
            state[k] = torch.rand_like(v) * 0.1  # LPIPS heads are non-negative
        else:
            state[k] = torch.randn_like(v) * 0.1
    return state


def _lpips_reference(state: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AlexNet LPIPS written out plainly in float64 from the original-layout state dict."""
    s = {k: v.double() for k, v in state.items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def feats(img):
        h = ((img.double() * 2 - 1) - shift) / scale
        out = []
        h = F.relu(F.conv2d(h, s["net.slice1.0.weight"], s["net.slice1.0.bias"], stride=4, padding=2))
        out.append(h)
        h = F.max_pool2d(h, 3, 2)
        h = F.relu(F.conv2d(h, s["net.slice2.3.weight"], s["net.slice2.3.bias"], padding=2))
        out.append(h)
        h = F.max_pool2d(h, 3, 2)
        h = F.relu(F.conv2d(h, s["net.slice3.6.weight"], s["net.slice3.6.bias"], padding=1))
        out.append(h)
        h = F.relu(F.conv2d(h, s["net.slice4.8.weight"], s["net.slice4.8.bias"], padding=1))
        out.append(h)
        h = F.relu(F.conv2d(h, s["net.slice5.10.weight"], s["net.slice5.10.bias"], padding=1))
        out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(feats(x), feats(y))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = s[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total = total + ((a - b) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    return total


def test_lpips_full_checkpoint_matches_plain_reference(tmp_path):
    state = _random_lpips_state("alex")
    path = tmp_path / "lpips_alex.pth"
    torch.save(state, path)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 64, 64, generator=g)
    y = torch.rand(2, 3, 64, 64, generator=g)
    out = lpips(x, y, checkpoint=path)
    assert out.shape == (2,)
    torch.testing.assert_close(out.double(), _lpips_reference(state, x, y), rtol=1e-4, atol=1e-6)
    assert lpips(x, x, checkpoint=path).abs().max() < 1e-6


def test_lpips_heads_plus_torchvision_backbone(tmp_path):
    state = _random_lpips_state("alex", seed=1)
    heads = {k: v for k, v in state.items() if k.startswith("lin")}  # LPIPS weights/v0.1/alex.pth layout
    backbone = {}
    for k, v in state.items():
        if k.startswith("net.slice"):
            backbone["features." + k.split(".", 2)[2]] = v
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # ignored
    torch.save(heads, tmp_path / "alex.pth")
    torch.save(backbone, tmp_path / "alexnet_tv.pth")
    with pytest.raises(LPIPSUnavailable, match="incomplete"):
        load_lpips(tmp_path / "alex.pth")
    model = load_lpips(tmp_path / "alex.pth", backbone=tmp_path / "alexnet_tv.pth")
    x, y = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    torch.testing.assert_close(model(x, y).double(), _lpips_reference(state, x, y), rtol=1e-4, atol=1e-6)


def test_lpips_vgg_layout_loads_strictly(tmp_path):
    state = LPIPS("vgg").state_dict()
    assert "net.slice5.28.weight" in state and state["lin4.model.1.weight"].shape == (1, 512, 1, 1)
    assert "net.slice2.5.weight" in state and state["net.slice2.5.weight"].shape == (128, 64, 3, 3)
    torch.save(state, tmp_path / "vgg.pth")
    out = lpips(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), checkpoint=tmp_path / "vgg.pth", net="vgg")
    assert out.shape == (1,) and out.isfinite().all()


def test_lpips_unavailable_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQRENDER_LPIPS_CHECKPOINT", raising=False)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(LPIPSUnavailable):
        lpips(x, x)
    with pytest.raises(LPIPSUnavailable, match="not found"):
        lpips(x, x, checkpoint=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="net"):
        LPIPS("squeeze")
