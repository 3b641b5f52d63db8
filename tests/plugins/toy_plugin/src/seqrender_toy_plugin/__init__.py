"""A minimal third-party seqrender plugin: posenc "toy", a 1-D RoPE over each attention's token order.

Within a frame (spatial attention) the position is the row-major patch index; across frames
(temporal window attention) it is the token's index in the window sequence, which is frame-major,
so frames are told apart by coarse offsets. No camera information is used.
"""
from dataclasses import dataclass

import torch
from torch import Tensor

from seqrender.models import registry
from seqrender.posenc import BlockTransform, Rotary, rope_angles


@dataclass
class ToyConfig:
    base: float = 100.0  # RoPE base of the 1-D frequencies


class ToyEncoding:
    """SceneEncoding: 1-D RoPE on q and k over all `head_dim` channels (head_dim // 2 bands)."""

    input_channels = 0

    def __init__(self, head_dim: int, *, base: float):
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.bands, self.base = head_dim // 2, base

    def input_features(self, intrinsics, extrinsics, height, width):
        return None

    def _rope(self, length: int, device) -> BlockTransform:
        positions = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (N, 1)
        angles = rope_angles(positions, [self.bands], base=self.base)                  # (N, bands)
        return BlockTransform(rotary=Rotary(angles[None]))

    def spatial(self, hw: Tensor) -> BlockTransform:
        """hw: (N, 2) -> a transform on (B·V, heads, N, d)."""
        return self._rope(hw.shape[0], hw.device)

    def temporal(self, hw: Tensor, extrinsics=None, times=None) -> BlockTransform:
        """hw: (B', N', 2) -> a transform on (B', heads, N', d)."""
        return self._rope(hw.shape[1], hw.device)


def build_toy(cfg: ToyConfig, *, head_dim: int) -> ToyEncoding:
    return ToyEncoding(head_dim, base=cfg.base)


def register() -> None:
    """Entry point of group `seqrender.plugins` (called once by `registry.load_plugins()`)."""
    registry.register("posenc", "toy", ToyConfig, build_toy)
