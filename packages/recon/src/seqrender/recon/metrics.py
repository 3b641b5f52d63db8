"""Image metrics: PSNR, SSIM (Wang et al. 2004) and LPIPS (Zhang et al. 2018) from local weights;
geometry metrics (Kaleido Table 3): Chamfer distance between point clouds and volumetric IoU of
occupancy grids.

The image metrics take images `(B, C, H, W)` with values in `[0, max_val]` and return one value per
image `(B,)`. LPIPS never downloads anything: it loads a local checkpoint or raises
`LPIPSUnavailable`, and callers report the metric as unavailable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LPIPS_CHECKPOINT_ENV = "SEQRENDER_LPIPS_CHECKPOINT"


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 4:
        raise ValueError(f"pred must be (B, C, H, W), got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def psnr(pred: Tensor, target: Tensor, *, max_val: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio `10·log10(max_val² / MSE)` per image.

    pred, target: (B, C, H, W) -> (B,). Identical images give `inf`.
    """
    _check_images(pred, target)
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(max_val**2 / mse)


def gaussian_window(size: int, sigma: float, *, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian `(size,)` centred on the middle sample."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: Tensor, g: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter per channel. x: (B, C, H, W), g: (k,) -> (B, C, H-k+1, W-k+1)."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim(
    pred: Tensor, target: Tensor, *, max_val: float = 1.0, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Structural similarity with a Gaussian window (Wang et al. 2004), mean over pixels and channels.

    pred, target: (B, C, H, W) -> (B,). Constants `C1 = (0.01·max_val)²`, `C2 = (0.03·max_val)²`;
    local statistics use the normalised Gaussian window over the 'valid' region only (no padding).
    Images smaller than the window: the window shrinks to the largest odd size `≤ min(H, W)`
    (sigma unchanged), so a 5×7 image is scored with a 5×5 window; a 1-pixel image reduces to the
    per-pixel luminance/contrast formula with zero variance.
    """
    _check_images(pred, target)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    small = min(pred.shape[-2:])
    size = min(window, small if small % 2 == 1 else small - 1)
    g = gaussian_window(size, sigma, dtype=pred.dtype, device=pred.device)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_x, mu_y = _filter(pred, g), _filter(target, g)
    var_x = _filter(pred * pred, g) - mu_x**2
    var_y = _filter(target * target, g) - mu_y**2
    cov = _filter(pred * target, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)


# ----------------------------------------------------------------------------------------------
# LPIPS


class LPIPSUnavailable(RuntimeError):
    """LPIPS weights are not available locally (they are never downloaded)."""


# Backbone layouts in torchvision's `features.<idx>` numbering, which LPIPS keeps inside its
# slices (`net.slice<k>.<idx>.*`). Entries: ("conv", in, out, kernel, stride, padding) | ("pool",).
_BACKBONES: dict[str, tuple[tuple[int, ...], dict[int, tuple]]] = {
    "alex": (
        (2, 5, 8, 10, 12),  # slice k covers features[ends[k-1]:ends[k]], starting at 0
        {
            0: ("conv", 3, 64, 11, 4, 2),
            2: ("pool", 3, 2),
            3: ("conv", 64, 192, 5, 1, 2),
            5: ("pool", 3, 2),
            6: ("conv", 192, 384, 3, 1, 1),
            8: ("conv", 384, 256, 3, 1, 1),
            10: ("conv", 256, 256, 3, 1, 1),
        },
    ),
    "vgg": (
        (4, 9, 16, 23, 30),
        {
            0: ("conv", 3, 64, 3, 1, 1),
            2: ("conv", 64, 64, 3, 1, 1),
            4: ("pool", 2, 2),
            5: ("conv", 64, 128, 3, 1, 1),
            7: ("conv", 128, 128, 3, 1, 1),
            9: ("pool", 2, 2),
            10: ("conv", 128, 256, 3, 1, 1),
            12: ("conv", 256, 256, 3, 1, 1),
            14: ("conv", 256, 256, 3, 1, 1),
            16: ("pool", 2, 2),
            17: ("conv", 256, 512, 3, 1, 1),
            19: ("conv", 512, 512, 3, 1, 1),
            21: ("conv", 512, 512, 3, 1, 1),
            23: ("pool", 2, 2),
            24: ("conv", 512, 512, 3, 1, 1),
            26: ("conv", 512, 512, 3, 1, 1),
            28: ("conv", 512, 512, 3, 1, 1),
        },
    ),
}


def _layer(spec: tuple | None) -> nn.Module:
    if spec is None:
        return nn.ReLU()
    if spec[0] == "pool":
        return nn.MaxPool2d(kernel_size=spec[1], stride=spec[2])
    _, cin, cout, k, s, p = spec
    return nn.Conv2d(cin, cout, k, stride=s, padding=p)


class _Backbone(nn.Module):
    """Five feature slices of AlexNet / VGG16 with torchvision's layer indices kept as names."""

    def __init__(self, net: str):
        super().__init__()
        ends, layers = _BACKBONES[net]
        start = 0
        for k, end in enumerate(ends, start=1):
            block = nn.Sequential()
            for idx in range(start, end):
                block.add_module(str(idx), _layer(layers.get(idx)))
            self.add_module(f"slice{k}", block)
            start = end
        self.channels = [
            [s for i, s in layers.items() if i < end and s[0] == "conv"][-1][2] for end in ends
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats


class _Linear(nn.Module):
    """LPIPS 1×1 linear head; `model.1` keeps the original key `lin<k>.model.1.weight`."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 network (backbone + linear heads) in the original key layout.

    Keys: `net.slice<k>.<idx>.{weight,bias}`, `lin<k>.model.1.weight` (k = 0..4),
    `scaling_layer.{shift,scale}`. forward: images (B, 3, H, W) in [0, 1] -> distances (B,).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"net must be one of {sorted(_BACKBONES)}, got {net!r}")
        self.scaling_layer = nn.Module()
        self.scaling_layer.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.scaling_layer.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = _Backbone(net)
        for k, c in enumerate(self.net.channels):
            self.add_module(f"lin{k}", _Linear(c))
        self.eval().requires_grad_(False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_images(pred, target)
        if pred.shape[1] != 3:
            raise ValueError(f"LPIPS needs RGB images (C = 3), got C = {pred.shape[1]}")
        f0 = self.net(self._scale(pred))
        f1 = self.net(self._scale(target))
        total = 0.0
        for k, (a, b) in enumerate(zip(f0, f1)):
            d = (_unit_channels(a) - _unit_channels(b)) ** 2
            total = total + getattr(self, f"lin{k}")(d).mean(dim=(1, 2, 3))
        return total

    def _scale(self, x: Tensor) -> Tensor:
        return (2 * x - 1 - self.scaling_layer.shift) / self.scaling_layer.scale


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Normalise each pixel's feature vector to unit length. x: (B, C, H, W)."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def _to_lpips_keys(state: dict[str, Tensor], net: str) -> dict[str, Tensor]:
    """Map torchvision backbone keys `features.<idx>.*` to LPIPS `net.slice<k>.<idx>.*`."""
    ends = _BACKBONES[net][0]
    out = {}
    for key, value in state.items():
        if key.startswith("features."):
            idx = int(key.split(".")[1])
            k = next(i for i, end in enumerate(ends, start=1) if idx < end)
            key = f"net.slice{k}.{key[len('features.'):]}"
        out[key] = value
    return out


def load_lpips(
    checkpoint: str | os.PathLike, *, net: str = "alex", backbone: str | os.PathLike | None = None
) -> LPIPS:
    """Build LPIPS from local files only.

    checkpoint: a full LPIPS state dict (`net.slice*`, `lin*`) or only the linear heads
    (`lin<k>.model.1.weight`, the layout of LPIPS' `weights/v0.1/<net>.pth`); in the latter case
    `backbone` must be a local torchvision AlexNet/VGG16 state dict (`features.<idx>.*`, extra
    classifier keys are ignored). Raises `LPIPSUnavailable` when a file is missing or incomplete.
    """
    model = LPIPS(net)
    state = _read_state(checkpoint)
    if backbone is not None:
        state.update({k: v for k, v in _read_state(backbone).items() if k.startswith("features.")})
    state = _to_lpips_keys(state, net)
    state.setdefault("scaling_layer.shift", model.scaling_layer.shift)
    state.setdefault("scaling_layer.scale", model.scaling_layer.scale)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise LPIPSUnavailable(
            f"LPIPS ({net}) checkpoint is incomplete, missing {missing[:4]}{'…' if len(missing) > 4 else ''};"
            " pass backbone= a local torchvision state dict when the file holds only the linear heads"
        )
    model.load_state_dict({k: state[k] for k in expected}, strict=True)
    return model


def _read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise LPIPSUnavailable(f"LPIPS weights not found at {path} (they are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise LPIPSUnavailable(f"{path} does not hold a state dict")
    return dict(state)


@lru_cache(maxsize=4)
def _cached_lpips(checkpoint: str, net: str, backbone: str | None) -> LPIPS:
    return load_lpips(checkpoint, net=net, backbone=backbone)


def lpips(
    pred: Tensor,
    target: Tensor,
    *,
    checkpoint: str | os.PathLike | None = None,
    net: str = "alex",
    backbone: str | os.PathLike | None = None,
) -> Tensor:
    """LPIPS distance per image. pred, target: (B, 3, H, W) in [0, 1] -> (B,).

    checkpoint defaults to the `SEQRENDER_LPIPS_CHECKPOINT` environment variable; without either,
    or when the file is missing, raises `LPIPSUnavailable`. Models are cached per path.
    """
    checkpoint = checkpoint if checkpoint is not None else os.environ.get(LPIPS_CHECKPOINT_ENV)
    if checkpoint is None:
        raise LPIPSUnavailable(
            f"no LPIPS checkpoint: pass checkpoint= or set {LPIPS_CHECKPOINT_ENV} to a local file"
        )
    model = _cached_lpips(str(checkpoint), net, None if backbone is None else str(backbone))
    return model.to(device=pred.device, dtype=pred.dtype)(pred, target)


def nearest_distances(source: Tensor, target: Tensor, *, chunk: int = 4096) -> Tensor:
    """Distance from each source point to its nearest target point.

    source (B, N, 3), target (B, M, 3) -> (B, N); `chunk` source points at a time (memory B·chunk·M).
    """
    if source.dim() != 3 or target.dim() != 3 or source.shape[0] != target.shape[0] or source.shape[-1] != target.shape[-1]:
        raise ValueError(f"point clouds must be (B, N, D) and (B, M, D), got {tuple(source.shape)} and {tuple(target.shape)}")
    if source.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError(f"point clouds must not be empty, got {tuple(source.shape)} and {tuple(target.shape)}")
    return torch.cat([torch.cdist(part, target).amin(dim=-1) for part in source.split(chunk, dim=1)], dim=1)


def chamfer_distance(pred: Tensor, target: Tensor, *, squared: bool = False, chunk: int = 4096) -> Tensor:
    """Symmetric Chamfer distance per cloud: ½·(mean_p min_t ‖p − t‖ + mean_t min_p ‖t − p‖),
    the mean of accuracy (pred → target) and completeness (target → pred).

    pred (B, N, 3), target (B, M, 3) -> (B,). squared=True averages squared distances instead
    (PyTorch3D's `chamfer_distance` is twice that value).
    """
    power = 2 if squared else 1
    accuracy = nearest_distances(pred, target, chunk=chunk).pow(power).mean(dim=1)
    completeness = nearest_distances(target, pred, chunk=chunk).pow(power).mean(dim=1)
    return 0.5 * (accuracy + completeness)


def voxel_centres(resolution: int, low: float = -1.0, high: float = 1.0, *, dtype=torch.float32, device=None) -> Tensor:
    """(R, R, R, 3) centres (x, y, z) of a cubic grid of R³ voxels on [low, high]³, indexed [x, y, z]."""
    step = (high - low) / resolution
    axis = low + step * (torch.arange(resolution, dtype=dtype, device=device) + 0.5)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def volume_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Volumetric IoU |pred ∩ target| / |pred ∪ target| of occupancy grids.

    pred, target (B, ...) bool (e.g. an inside test at `voxel_centres`) -> (B,); 1 where both are empty.
    """
    if pred.shape != target.shape or pred.dim() < 2:
        raise ValueError(f"occupancy grids must be (B, ...) of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (pred & target).sum(dim=1).double()
    union = (pred | target).sum(dim=1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


__all__ = [
    "LPIPS",
    "LPIPS_CHECKPOINT_ENV",
    "LPIPSUnavailable",
    "chamfer_distance",
    "gaussian_window",
    "load_lpips",
    "lpips",
    "nearest_distances",
    "psnr",
    "ssim",
    "volume_iou",
    "voxel_centres",
]
