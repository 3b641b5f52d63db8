"""Block-sparse flash attention for the fused view-time pattern, forward and backward, in Triton.

Each program owns one block of queries (forward, dq) or keys (dk, dv) that lies inside a single
frame (v, t), so it visits only the key (query) ranges of that frame's view row
[v·T·S, (v+1)·T·S) and of the other frames (v', t) of its time column, plus the register keys
[N, N + R). Partial blocks at range ends are masked, so S need not be a multiple of the block size.
Online softmax (running max and sum) keeps memory linear; GQA maps q head h to kv head h // g.
The backward recomputes probabilities from the saved logsumexp (FlashAttention-2).
Runs on GPU, or on CPU under TRITON_INTERPRET=1 (set before this module is imported).
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..core import append_registers

# fp32 products in IEEE fp32 (exact, like the other backends); fp16 inputs use tensor cores anyway
PRECISION: tl.constexpr = tl.constexpr("ieee")


@triton.jit
def _allowed(offs_n, hi, fm_row, S, HAS_FM: tl.constexpr):
    """(BLOCK_N,) bool: key in range and permitted by the query frame's frame-mask row."""
    ok = offs_n < hi
    if HAS_FM:
        fm = tl.load(fm_row + offs_n // S, mask=ok, other=1)
        ok = ok & (fm != 0)
    return ok


@triton.jit
def _load_rows(a_base, b_base, stride, offs, valid, offs_d, mask_d):
    """Rows `offs` (BLOCK, BLOCK_D) of two same-strided (tokens, d) tensors; invalid rows are 0."""
    off = offs[:, None] * stride + offs_d[None, :]
    mask = valid[:, None] & mask_d[None, :]
    return tl.load(a_base + off, mask=mask, other=0.0), tl.load(b_base + off, mask=mask, other=0.0)


@triton.jit
def _query_block(pid_m, pid_bh, HQ, T, S, BLOCK_M: tl.constexpr):
    """Program -> (batch, q head, frame, view, time, token offsets, valid); blocks never span frames."""
    blocks = tl.cdiv(S, BLOCK_M)
    frame, local = pid_m // blocks, (pid_m % blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    return pid_bh // HQ, pid_bh % HQ, frame, frame // T, frame % T, frame * S + local, local < S


@triton.jit
def _fwd_range(acc, m_i, l_i, q, k_base, v_base, stride_kn, offs_d, mask_d, lo, hi, fm_row, S,
               scale, HAS_FM: tl.constexpr, BLOCK_N: tl.constexpr):
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        ok = _allowed(offs_n, hi, fm_row, S, HAS_FM)
        k, v = _load_rows(k_base, v_base, stride_kn, offs_n, offs_n < hi, offs_d, mask_d)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _dq_range(dq, q, do, lse, delta, k_base, v_base, stride_kn, offs_d, mask_d, lo, hi, fm_row, S,
              scale, HAS_FM: tl.constexpr, BLOCK_N: tl.constexpr):
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        ok = _allowed(offs_n, hi, fm_row, S, HAS_FM)
        k, v = _load_rows(k_base, v_base, stride_kn, offs_n, offs_n < hi, offs_d, mask_d)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        p = tl.where(ok[None, :], tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION) * scale
    return dq


@triton.jit
def _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, offs_d, mask_d, lo, hi,
                fm_col, F, S, fm_on, scale, HAS_FM: tl.constexpr, BLOCK_M: tl.constexpr):
    for start in range(lo, hi, BLOCK_M):
        offs_m = start + tl.arange(0, BLOCK_M)
        in_range = offs_m < hi
        ok = in_range
        if HAS_FM:
            fm = tl.load(fm_col + (offs_m // S) * F, mask=in_range & (offs_m < fm_on * hi), other=1)
            ok = ok & (fm != 0)
        q, do = _load_rows(q_base, do_base, stride_qn, offs_m, in_range, offs_d, mask_d)
        lse = tl.load(lse_base + offs_m, mask=in_range, other=0.0)
        delta = tl.load(delta_base + offs_m, mask=in_range, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale
        p_t = tl.where(ok[None, :], tl.exp(s_t - lse[None, :]), 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION) * scale
    return dk, dv


@triton.jit
def _viewtime_fwd(Q, K, Vv, O, LSE, FM, sqb, sqh, sqn, skb, skh, skn, HQ, GROUP, N, R, V, T, S, D, scale,
                  HAS_FM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_bh = tl.program_id(1)
    b, h, frame, view, time, offs_m, valid_m = _query_block(tl.program_id(0), pid_bh, HQ, T, S, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    q_off = b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :]
    q = tl.load(Q + q_off, mask=valid_m[:, None] & mask_d[None, :], other=0.0)
    k_base = K + b * skb + (h // GROUP) * skh
    v_base = Vv + b * skb + (h // GROUP) * skh
    fm_row = FM + b * V * T * V * T + frame * V * T
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    row = view * T * S
    acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skn, offs_d, mask_d, row, row + T * S,
                               fm_row, S, scale, HAS_FM, BLOCK_N)
    for other in range(0, V):
        if other != view:
            lo = (other * T + time) * S
            acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skn, offs_d, mask_d, lo, lo + S,
                                       fm_row, S, scale, HAS_FM, BLOCK_N)
    acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skn, offs_d, mask_d, N, N + R,
                               fm_row, S, scale, False, BLOCK_N)
    out = acc / l_i[:, None]
    tl.store(O + q_off, out.to(O.dtype.element_ty), mask=valid_m[:, None] & mask_d[None, :])
    tl.store(LSE + pid_bh * N + offs_m, m_i + tl.log(l_i), mask=valid_m)


@triton.jit
def _viewtime_dq(Q, K, Vv, DO, LSE, DELTA, DQ, FM, sqb, sqh, sqn, skb, skh, skn, HQ, GROUP, N, R, V, T, S, D,
                 scale, HAS_FM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_D: tl.constexpr):
    pid_bh = tl.program_id(1)
    b, h, frame, view, time, offs_m, valid_m = _query_block(tl.program_id(0), pid_bh, HQ, T, S, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    q, do = _load_rows(Q + b * sqb + h * sqh, DO + b * sqb + h * sqh, sqn, offs_m, valid_m, offs_d, mask_d)
    lse = tl.load(LSE + pid_bh * N + offs_m, mask=valid_m, other=0.0)
    delta = tl.load(DELTA + pid_bh * N + offs_m, mask=valid_m, other=0.0)
    k_base = K + b * skb + (h // GROUP) * skh
    v_base = Vv + b * skb + (h // GROUP) * skh
    fm_row = FM + b * V * T * V * T + frame * V * T
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    row = view * T * S
    dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, skn, offs_d, mask_d, row, row + T * S, fm_row, S,
                   scale, HAS_FM, BLOCK_N)
    for other in range(0, V):
        if other != view:
            lo = (other * T + time) * S
            dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, skn, offs_d, mask_d, lo, lo + S, fm_row, S,
                           scale, HAS_FM, BLOCK_N)
    dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, skn, offs_d, mask_d, N, N + R, fm_row, S,
                   scale, False, BLOCK_N)
    q_off = b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :]
    tl.store(DQ + q_off, dq.to(DQ.dtype.element_ty), mask=valid_m[:, None] & mask_d[None, :])


@triton.jit
def _viewtime_dkdv(Q, K, Vv, DO, LSE, DELTA, DK, DV, FM, sqb, sqh, sqn, skb, skh, skn, HKV, GROUP, N, R, V, T, S,
                   D, scale, HAS_FM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr):
    pid_n, pid_bh = tl.program_id(0), tl.program_id(1)
    b, hk = pid_bh // HKV, pid_bh % HKV
    blocks = tl.cdiv(S, BLOCK_N)
    seq_programs = V * T * blocks
    # programs past the V·T frames' key blocks own register key blocks, which every query attends
    is_reg = (pid_n >= seq_programs).to(tl.int32)
    frame = tl.minimum(pid_n // blocks, V * T - 1)
    view, time = frame // T, frame % T
    local = (is_reg * (pid_n - seq_programs) + (1 - is_reg) * (pid_n % blocks)) * BLOCK_N + tl.arange(0, BLOCK_N)
    valid_n = local < is_reg * R + (1 - is_reg) * S
    offs_n = is_reg * N + (1 - is_reg) * frame * S + local
    row = (1 - is_reg) * view * T * S
    row_end = row + is_reg * N + (1 - is_reg) * T * S
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    k_off = b * skb + hk * skh + offs_n[:, None] * skn + offs_d[None, :]
    k_mask = valid_n[:, None] & mask_d[None, :]
    k, v = _load_rows(K + b * skb + hk * skh, Vv + b * skb + hk * skh, skn, offs_n, valid_n, offs_d, mask_d)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    fm_col = FM + b * V * T * V * T + frame
    for g in range(0, GROUP):
        h = hk * GROUP + g
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sqb + h * sqh
        lse_base = LSE + (b * HKV * GROUP + h) * N
        delta_base = DELTA + (b * HKV * GROUP + h) * N
        dk, dv = _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqn, offs_d, mask_d, row, row_end,
                             fm_col, V * T, S, 1 - is_reg, scale, HAS_FM, BLOCK_M)
        for other in range(0, V):
            if (other != view) & (is_reg == 0):
                lo = (other * T + time) * S
                dk, dv = _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqn, offs_d, mask_d, lo,
                                     lo + S, fm_col, V * T, S, 1 - is_reg, scale, HAS_FM, BLOCK_M)
    tl.store(DK + k_off, dk.to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV + k_off, dv.to(DV.dtype.element_ty), mask=k_mask)


def _launch_args(q: Tensor, k: Tensor, views: int, times: int, num_registers: int, frame_mask: Tensor | None):
    batch, heads, n, dim = q.shape
    fm = q if frame_mask is None else frame_mask.to(torch.int8).contiguous()
    strides = (*q.stride()[:3], *k.stride()[:3])
    return fm, strides, (heads // k.shape[1], n, num_registers, views, times, n // (views * times), dim)


class _TritonViewTime(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, views, times, num_registers, frame_mask, block_m, block_n):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        batch, heads, n, dim = q.shape
        fm, strides, sizes = _launch_args(q, k, views, times, num_registers, frame_mask)
        tokens = sizes[5]
        out = torch.empty_like(q)
        lse = torch.empty(batch, heads, n, device=q.device, dtype=torch.float32)
        grid = (views * times * triton.cdiv(tokens, block_m), batch * heads)
        _viewtime_fwd[grid](q, k, v, out, lse, fm, *strides, heads, *sizes, 1.0 / math.sqrt(dim),
                            HAS_FM=frame_mask is not None, BLOCK_M=block_m, BLOCK_N=block_n,
                            BLOCK_D=max(16, triton.next_power_of_2(dim)))
        ctx.save_for_backward(q, k, v, out, lse, fm)
        ctx.config = (views, times, num_registers, frame_mask is not None, block_m, block_n)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, fm = ctx.saved_tensors
        views, times, num_registers, has_fm, block_m, block_n = ctx.config
        grad_out = grad_out.contiguous()
        batch, heads, n, dim = q.shape
        _, strides, sizes = _launch_args(q, k, views, times, num_registers, None)
        tokens, scale, block_d = sizes[5], 1.0 / math.sqrt(dim), max(16, triton.next_power_of_2(dim))
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grid_q = (views * times * triton.cdiv(tokens, block_m), batch * heads)
        _viewtime_dq[grid_q](q, k, v, grad_out, lse, delta, dq, fm, *strides, heads, *sizes, scale, HAS_FM=has_fm,
                             BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
        grid_k = (views * times * triton.cdiv(tokens, block_n) + triton.cdiv(num_registers, block_n),
                  batch * k.shape[1])
        _viewtime_dkdv[grid_k](q, k, v, grad_out, lse, delta, dk, dv, fm, *strides, k.shape[1], *sizes, scale,
                               HAS_FM=has_fm, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
        return dq, dk, dv, None, None, None, None, None, None


def triton_viewtime(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    views: int,
    times: int,
    *,
    registers: tuple[Tensor, Tensor] | None = None,
    frame_mask: Tensor | None = None,
    block_m: int = 64,
    block_n: int = 64,
) -> Tensor:
    """q (B, Hq, V·T·S, d), k and v (B, Hkv, V·T·S, d) -> (B, Hq, V·T·S, d); float32 or float16.

    Registers (R, Hkv, d) pairs are appended to k and v and visited by every query block.
    """
    num_registers = 0
    if registers is not None:
        num_registers = registers[0].shape[0]
        k, v, _ = append_registers(k, v, *registers, None)
    return _TritonViewTime.apply(q, k, v, views, times, num_registers, frame_mask, block_m, block_n)
