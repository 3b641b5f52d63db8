"""Kaleido's auxiliary DINOv2 encoder: the hub model sizes and a local-file loader around the one
DINOv2 implementation, `seqrender.recon.dinov2` (facebookresearch/dinov2 torch-hub key names, so
`dinov2_vit{s,b,l}14[_reg]_pretrain.pth` loads unchanged).

Weights are only ever read from a local file (`load_dinov2`); nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from seqrender.models.weights import check_state_dict
from seqrender.recon.dinov2 import IMAGENET_MEAN, IMAGENET_STD, DinoV2, DinoV2Config, normalise_images

__all__ = ["DINOV2_SIZES", "DinoV2", "DinoV2Config", "IMAGENET_MEAN", "IMAGENET_STD", "load_dinov2",
           "normalise_images", "read_state_dict"]


def _registers(**kw) -> dict:
    return {"num_register_tokens": 4, "interpolate_offset": 0.0, "interpolate_antialias": True, **kw}


DINOV2_SIZES = {
    "dinov2_vits14": DinoV2Config(embed_dim=384, depth=12, num_heads=6),
    "dinov2_vitb14": DinoV2Config(embed_dim=768, depth=12, num_heads=12),
    "dinov2_vitl14": DinoV2Config(embed_dim=1024, depth=24, num_heads=16),
    "dinov2_vits14_reg": DinoV2Config(**_registers(embed_dim=384, depth=12, num_heads=6)),
    "dinov2_vitb14_reg": DinoV2Config(**_registers(embed_dim=768, depth=12, num_heads=12)),
    "dinov2_vitl14_reg": DinoV2Config(**_registers(embed_dim=1024, depth=24, num_heads=16)),
}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local .pth/.pt (torch.load, weights only) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINOv2 checkpoint not found: {path} (weights are never downloaded)")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in (".pth", ".pt"):
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"DINOv2 checkpoint must end in .pth, .pt or .safetensors; got {path.name}")


def load_dinov2(config: DinoV2Config | str, path: str | Path | None = None) -> DinoV2:
    """DINOv2 for `config` (a DinoV2Config or a DINOV2_SIZES name) with weights from the local file
    `path` in the hub's key layout, or randomly initialised when path is None.

    Every checkpoint tensor must match a parameter in name and shape; only `mask_token` (unused at
    inference) may be absent from the file. Any mismatch is one ValueError naming the keys and,
    for a wrong shape, the file's and the model's shapes.
    """
    if isinstance(config, str):
        if config not in DINOV2_SIZES:
            raise ValueError(f"DINOv2 name must be one of {', '.join(DINOV2_SIZES)}; got {config!r}")
        config = DINOV2_SIZES[config]
    model = DinoV2(config)
    if path is not None:
        state = read_state_dict(path)
        check_state_dict(model.state_dict(), state, source=f"DINOv2 checkpoint {path}", target=config,
                         optional=("mask_token",))
        model.load_state_dict(state, strict=False)
    return model
