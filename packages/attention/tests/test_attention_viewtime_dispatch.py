"""backend="auto" for fused view-time attention: which backend the measured crossover rule picks, that
the pick is the one that runs, and that it is exact (float64 dense masked attention as reference).

The anchors are measured facts, not the rule's own output: at V = T = 4 with 16 tokens per frame
decomposed runs at 0.37× dense SDPA (issue 14), at V = T = 8 with 64 tokens it runs 3.4× faster
(SPEC §5); with V = 1 or T = 1 the pattern is full attention, so there is nothing to skip.
"""
import pytest
import torch

from seqrender.attention.viewtime import api

from attention_testing import dense_attention, random_viewtime_case


def pattern_mask(views: int, times: int, tokens: int, frame_mask):
    """(B, 1, N, N) bool from token coordinates: same view or same time, AND the frame mask."""
    index = torch.arange(views * times * tokens)
    view, time, frame = index // (times * tokens), index // tokens % times, index // tokens
    same = (view[:, None] == view[None]) | (time[:, None] == time[None])
    return (same & frame_mask[:, frame][:, :, frame])[:, None]


@pytest.mark.parametrize("views,times,tokens,expected", [
    (4, 4, 16, "reference"),    # issue 14: decomposed 0.37× dense
    (8, 8, 64, "decomposed"),   # SPEC §5: decomposed 3.4× dense
    (2, 2, 4, "reference"),     # tiny: kernel-call overheads dominate
])
def test_auto_rule_matches_measured_anchors(views, times, tokens, expected):
    assert api.choose_cpu_backend(views, times, tokens) == expected


@pytest.mark.parametrize("views,times", [(1, 64), (64, 1), (1, 1)])
def test_full_pattern_always_dense(views, times):
    """V = 1 or T = 1: the pattern is dense, decomposition can only add work, at any size."""
    for tokens in (1, 64, 4096):
        assert api.choose_cpu_backend(views, times, tokens) == "reference"


def test_rule_is_monotone_in_size_and_sparsity():
    """Once decomposed wins, more tokens per frame or a sparser grid (more views and times) keep it."""
    for views, times in [(2, 8), (4, 4), (8, 8), (16, 16)]:
        picks = [api.choose_cpu_backend(views, times, s) for s in (1, 4, 16, 64, 256, 1024)]
        first = picks.index("decomposed") if "decomposed" in picks else len(picks)
        assert all(p == "decomposed" for p in picks[first:]), (views, times, picks)
    for tokens in (16, 64, 256):
        picks = [api.choose_cpu_backend(g, g, tokens) for g in (2, 4, 8, 16, 32)]
        first = picks.index("decomposed") if "decomposed" in picks else len(picks)
        assert all(p == "decomposed" for p in picks[first:]), (tokens, picks)


def test_efficiency_interpolates_the_table():
    (n0, e0), (n1, e1), *_ = api.DECOMPOSED_EFFICIENCY
    assert api.decomposed_efficiency(n0) == pytest.approx(e0)
    assert api.decomposed_efficiency(n1) == pytest.approx(e1)
    assert api.decomposed_efficiency(int((n0 * n1) ** 0.5)) == pytest.approx((e0 + e1) / 2, abs=1e-3)  # log2 midpoint
    assert api.decomposed_efficiency(10**9) == pytest.approx(api.DECOMPOSED_EFFICIENCY[-1][1])
    assert api.decomposed_efficiency(1) == 0.0


def test_without_private_ops_auto_is_dense(monkeypatch):
    assert api.choose_cpu_backend(8, 8, 64, private_ops=False) == "reference"
    monkeypatch.setattr(api, "private_ops_available", lambda q: False)
    q = torch.zeros(1, 2, 8 * 8 * 64, 4)
    assert api.resolve_backend("auto", q, 8, 8) == "reference"


def test_auto_on_other_devices():
    """No Triton/CUDA: dense SDPA (the public decomposed path would materialise scores)."""
    q = torch.empty(1, 2, 8 * 8 * 64, 4, device="meta")
    assert api.resolve_backend("auto", q, 8, 8) == "reference"
    assert api.resolve_backend("decomposed", q, 8, 8) == "decomposed"  # explicit choices are kept


@pytest.mark.parametrize("views,times,tokens", [(4, 4, 16), (16, 16, 8)])
def test_auto_runs_the_chosen_backend_exactly(monkeypatch, views, times, tokens):
    calls = []
    for name in ("reference_viewtime", "decomposed_viewtime"):
        original = getattr(api, name)
        monkeypatch.setattr(api, name, lambda *a, _f=original, _n=name, **kw: calls.append(_n) or _f(*a, **kw))
    tensors, fm = random_viewtime_case(0, 1, 2, 1, views, times, tokens, 8, 1, True)
    q, k, v, rk, rv = (t.detach() for t in tensors)
    out = api.viewtime_attention(q, k, v, views, times, registers=(rk, rv), frame_mask=fm)
    assert calls == [f"{api.choose_cpu_backend(views, times, tokens)}_viewtime"]
    mask = pattern_mask(views, times, tokens, fm)
    keys = torch.cat([k, rk.permute(1, 0, 2)[None]], dim=2)
    values = torch.cat([v, rv.permute(1, 0, 2)[None]], dim=2)
    full_mask = torch.cat([mask, torch.ones(*mask.shape[:3], 1, dtype=torch.bool)], dim=-1)
    expected = dense_attention(q, keys, values, full_mask)
    torch.testing.assert_close(out, expected)
