"""Exact fused view-time attention from dense attention calls.

Every query (v, t, s) attends to the union of three disjoint key sets:
  row       — its view row: all frames (v, t') of view v (own frame included);
  column    — its time column without its own frame: frames (v', t) with v' ≠ v;
  registers — the R register keys (when given).
Each set is one batched dense attention returning (output, logsumexp); the parts are merged by
log-sum-exp, which is exact. GQA is handled by folding the g query heads of a kv head into the query
sequence, so keys and values are never repeated.

On CPU the parts run on the private ATen kernel `_scaled_dot_product_flash_attention_for_cpu`
(which returns the logsumexp) inside a custom autograd function whose backward calls the matching
`_backward` op once per part with the merged output and merged logsumexp and adds the gradients.
Elsewhere, or when those ops are missing, a public matmul-softmax path computes the same parts and
autograd differentiates it.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from einops import rearrange
from torch import Tensor


ROW_Q = "b (h g) (v t s) d -> (b v) h (g t s) d"
ROW_K = "b h (v t s) d -> (b v) h (t s) d"
COL_Q = "b (h g) (v t s) d -> (b t) h (g v s) d"
COL_K = "b h (v t s) d -> (b t) h (v s) d"
REG_Q = "b (h g) n d -> b h (g n) d"


def _private_op(name: str):
    try:
        return getattr(torch.ops.aten, name).default
    except (AttributeError, RuntimeError):
        return None


FLASH_CPU = _private_op("_scaled_dot_product_flash_attention_for_cpu")
FLASH_CPU_BACKWARD = _private_op("_scaled_dot_product_flash_attention_for_cpu_backward")


def _invert(pattern: str) -> str:
    lhs, rhs = pattern.split("->")
    return f"{rhs.strip()} -> {lhs.strip()}"


def _relayout(x: Tensor, pattern: str, sizes: dict[str, int], *, lse: bool = False) -> Tensor:
    """einops.rearrange with only the axis sizes the pattern names; lse drops the trailing d axis."""
    if lse:
        pattern = pattern.replace(" d", "")
    names = set(pattern.replace("(", " ").replace(")", " ").split())
    return rearrange(x, pattern, **{k: n for k, n in sizes.items() if k in names}).contiguous()


@dataclass
class Part:
    """One dense attention: q (n, Hkv, g·Lq, d) over k, v (n, Hkv, Lk, d).

    mask: additive float mask broadcastable to (n, 1, g·Lq, Lk) or None; empty: bool broadcastable
    to (n, 1, g·Lq), True where a query row has no key in this part; q_pattern / k_pattern map the
    full layout (B, H, N, d) to this part (k_pattern None: the keys are the registers).
    """

    q: Tensor
    k: Tensor
    v: Tensor
    mask: Tensor | None
    empty: Tensor | None
    q_pattern: str
    k_pattern: str | None


def _additive(allowed: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """Bool (n, 1, Lq, Lk) -> additive mask and the rows with no allowed key (or None)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, -math.inf)
    empty = ~allowed.any(dim=-1)
    return mask, (empty if bool(empty.any()) else None)


def _expand_frames(allowed: Tensor, sizes: dict[str, int]) -> Tensor:
    """Frame-level bool (n, Fq, Fk) -> token level (n, 1, g·Fq·S, Fk·S) with the g query heads folded."""
    s = sizes["s"]
    return allowed.repeat_interleave(s, 1).repeat_interleave(s, 2).repeat(1, sizes["g"], 1)[:, None]


def _row_allowed(frame_mask: Tensor, sizes: dict[str, int]) -> Tensor:
    """(B, F, F) -> bool (B·V, 1, g·T·S, T·S): frame_mask restricted to each view row."""
    fm = rearrange(frame_mask, "b (v t) (w u) -> b v t w u", v=sizes["v"], w=sizes["v"])
    return _expand_frames(rearrange(torch.diagonal(fm, dim1=1, dim2=3), "b t u v -> (b v) t u"), sizes)


def _column_allowed(frame_mask: Tensor | None, sizes: dict[str, int], device) -> Tensor:
    """bool (B·T or 1, 1, g·V·S, V·S): other views at the query's time, AND frame_mask."""
    views = sizes["v"]
    other = ~torch.eye(views, dtype=torch.bool, device=device)[None]
    if frame_mask is not None:
        fm = rearrange(frame_mask, "b (v t) (w u) -> b v t w u", v=views, w=views)
        other = other & rearrange(torch.diagonal(fm, dim1=2, dim2=4), "b v w t -> (b t) v w")
    return _expand_frames(other, sizes)


@lru_cache(maxsize=8)
def _plain_column_mask(views: int, tokens: int, group: int, dtype: torch.dtype, device) -> Tensor:
    """Cached additive column mask without a frame mask (no row is ever empty: V > 1)."""
    sizes = dict(v=views, s=tokens, g=group)
    return _additive(_column_allowed(None, sizes, device), dtype)[0]


def split_parts(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    sizes: dict[str, int],
    registers: tuple[Tensor, Tensor] | None,
    frame_mask: Tensor | None,
) -> list[Part]:
    """The row, column and register parts of fused view-time attention (see module docstring)."""
    row_mask = row_empty = None
    if frame_mask is not None:
        row_mask, row_empty = _additive(_row_allowed(frame_mask, sizes), q.dtype)
    parts = [Part(*(_relayout(x, p, sizes) for x, p in ((q, ROW_Q), (k, ROW_K), (v, ROW_K))),
                  row_mask, row_empty, ROW_Q, ROW_K)]
    if sizes["v"] > 1:
        if frame_mask is None:
            col_mask, col_empty = _plain_column_mask(sizes["v"], sizes["s"], sizes["g"], q.dtype, q.device), None
        else:
            col_mask, col_empty = _additive(_column_allowed(frame_mask, sizes, q.device), q.dtype)
        parts.append(Part(*(_relayout(x, p, sizes) for x, p in ((q, COL_Q), (k, COL_K), (v, COL_K))),
                          col_mask, col_empty, COL_Q, COL_K))
    if registers is not None and registers[0].shape[0] > 0:
        reg_k, reg_v = (rearrange(r, "r h d -> 1 h r d").expand(sizes["b"], -1, -1, -1).contiguous().to(q.dtype)
                        for r in registers)
        parts.append(Part(_relayout(q, REG_Q, sizes), reg_k, reg_v, None, None, REG_Q, None))
    return parts


def _math_part(part: Part) -> tuple[Tensor, Tensor]:
    """Public path: (out, lse) of one part by explicit matmul-softmax (differentiable)."""
    scores = part.q @ part.k.transpose(-1, -2) / math.sqrt(part.q.shape[-1])
    if part.mask is not None:
        scores = scores + part.mask
    if part.empty is None:
        lse = torch.logsumexp(scores, dim=-1)
        return torch.exp(scores - lse[..., None]) @ part.v, lse
    empty = part.empty[..., None]
    scores = scores.masked_fill(empty, 0.0)  # keyless rows: finite scores, zero weights below
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None]).masked_fill(empty, 0.0)
    return probs @ part.v, lse.masked_fill(part.empty, -math.inf)


def _flash_part(part: Part) -> tuple[Tensor, Tensor]:
    """CPU path: (out, lse) of one part from the private flash kernel."""
    out, lse = FLASH_CPU(part.q, part.k, part.v, attn_mask=part.mask)
    if part.empty is not None:
        lse = lse.masked_fill(part.empty, -math.inf)
    return out, lse


def merge_parts(parts: list[Part], results: list[tuple[Tensor, Tensor]], sizes) -> tuple[Tensor, Tensor]:
    """Merge part outputs by log-sum-exp -> out (B, Hq, N, d), lse (B, Hq, N)."""
    outs = [_relayout(o, _invert(p.q_pattern), sizes) for p, (o, _) in zip(parts, results)]
    lses = [_relayout(l, _invert(p.q_pattern), sizes, lse=True) for p, (_, l) in zip(parts, results)]
    lse = torch.logsumexp(torch.stack(lses), dim=0)
    out = sum(torch.exp(l - lse)[..., None] * o for o, l in zip(outs, lses))
    return out.to(outs[0].dtype), lse


class _FlashDecomposed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, reg_k, reg_v, sizes, frame_mask):
        registers = None if reg_k is None else (reg_k, reg_v)
        parts = split_parts(q, k, v, sizes, registers, frame_mask)
        out, lse = merge_parts(parts, [_flash_part(p) for p in parts], sizes)
        ctx.save_for_backward(out, lse)
        ctx.parts, ctx.sizes, ctx.reg_dtype = parts, sizes, None if reg_k is None else reg_k.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, lse = ctx.saved_tensors
        sizes, grads, d_reg = ctx.sizes, [None, None, None], (None, None)
        grad_out = grad_out.contiguous()
        for part in ctx.parts:
            go, o = (_relayout(x, part.q_pattern, sizes) for x in (grad_out, out))
            l = _relayout(lse, part.q_pattern, sizes, lse=True)
            gq, gk, gv = FLASH_CPU_BACKWARD(go, part.q, part.k, part.v, o, l, 0.0, False, attn_mask=part.mask)
            if part.k_pattern is None:
                d_reg = tuple(rearrange(g.sum(0), "h r d -> r h d").to(ctx.reg_dtype) for g in (gk, gv))
                updates = [(0, gq, part.q_pattern)]
            else:
                updates = [(0, gq, part.q_pattern), (1, gk, part.k_pattern), (2, gv, part.k_pattern)]
            for index, grad, pattern in updates:
                grad = _relayout(grad, _invert(pattern), sizes)
                grads[index] = grad if grads[index] is None else grads[index].add_(grad)
        ctx.parts = None
        return *grads, *d_reg, None, None


def private_ops_available(q: Tensor) -> bool:
    """True where the private CPU flash kernel (forward and backward) can run on q."""
    return FLASH_CPU is not None and FLASH_CPU_BACKWARD is not None and q.device.type == "cpu"


def decomposed_viewtime(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    views: int,
    times: int,
    *,
    registers: tuple[Tensor, Tensor] | None = None,
    frame_mask: Tensor | None = None,
    private_ops: bool | None = None,
) -> Tensor:
    """q (B, Hq, V·T·S, d), k and v (B, Hkv, V·T·S, d) -> (B, Hq, V·T·S, d).

    private_ops: None = use the private CPU flash kernel where available; False = public path.
    """
    batch, heads, n, _ = q.shape
    sizes = dict(b=batch, v=views, t=times, s=n // (views * times), g=heads // k.shape[1])
    use_private = private_ops_available(q) if private_ops is None else private_ops
    if use_private:
        reg_k, reg_v = registers if registers is not None else (None, None)
        return _FlashDecomposed.apply(q, k, v, reg_k, reg_v, sizes, frame_mask)
    parts = split_parts(q, k, v, sizes, registers, frame_mask)
    return merge_parts(parts, [_math_part(p) for p in parts], sizes)[0]
