"""Independent helpers for the seqrender-attention tests (float64 references and a test hook)."""

import math

import torch
from torch import Tensor


def dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Explicit softmax(q kᵀ/√d) v. q (B, Hq, N, d); k, v (B, Hkv, M, d); mask bool (.., N, M)."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class AngleRotation:
    """Test hook: rotates channel pairs of q, k, v by a per-token angle and the output back.

    angles: (B or 1, N) -> acts on (B, heads, N, d).
    """

    def __init__(self, angles: Tensor):
        self.cos, self.sin = angles.cos()[:, None, :, None], angles.sin()[:, None, :, None]
        self.calls = []

    def _rotate(self, x: Tensor, sign: float) -> Tensor:
        a, b = x[..., 0::2], x[..., 1::2]
        s = sign * self.sin
        return torch.stack([a * self.cos - b * s, a * s + b * self.cos], dim=-1).flatten(-2)

    def transform_qkv(self, q, k, v):
        self.calls.append((tuple(q.shape), tuple(k.shape), tuple(v.shape)))
        return self._rotate(q, 1.0), self._rotate(k, 1.0), self._rotate(v, 1.0)

    def transform_out(self, o):
        return self._rotate(o, -1.0)


def brute_force_viewtime_mask(views: int, times: int, tokens: int, frame_mask=None):
    """(B or 1, N, N) bool mask written out token by token from (v, t, s) coordinates."""
    coords = [(v, t) for v in range(views) for t in range(times) for _ in range(tokens)]
    batch = 1 if frame_mask is None else frame_mask.shape[0]
    n = len(coords)
    mask = torch.zeros(batch, n, n, dtype=torch.bool)
    for i, (vi, ti) in enumerate(coords):
        for j, (vj, tj) in enumerate(coords):
            if vi == vj or ti == tj:
                if frame_mask is None:
                    mask[:, i, j] = True
                else:
                    mask[:, i, j] = frame_mask[:, vi * times + ti, vj * times + tj]
    return mask


def random_viewtime_case(seed, batch, heads, kv_heads, views, times, tokens, dim, registers, with_frame_mask,
                         dtype=torch.float64):
    """Random leaf tensors (q, k, v, reg_k, reg_v) and an optional frame mask for a view-time test."""
    g = torch.Generator().manual_seed(seed)
    n = views * times * tokens
    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    tensors = [leaf(batch, heads, n, dim), leaf(batch, kv_heads, n, dim), leaf(batch, kv_heads, n, dim)]
    if registers:
        tensors += [leaf(registers, kv_heads, dim), leaf(registers, kv_heads, dim)]
    frame_mask = None
    if with_frame_mask:
        frames = views * times
        frame_mask = torch.rand(batch, frames, frames, generator=g) < 0.6
        frame_mask[0, 0] = False  # one frame sees nothing: only registers (or NaN without them)
        if not registers:
            frame_mask |= torch.eye(frames, dtype=torch.bool)
    return tensors, frame_mask


def output_and_grads(fn, tensors, frame_mask, views, times, grad_seed=0):
    """Run fn(q, k, v, views, times, registers=, frame_mask=) and return output and input gradients."""
    q, k, v, *regs = tensors
    out = fn(q, k, v, views, times, registers=tuple(regs) if regs else None, frame_mask=frame_mask)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    grads = torch.autograd.grad((out * weight.to(out.device, out.dtype)).sum(), tensors)
    return out.detach(), grads
