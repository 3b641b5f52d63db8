"""`seqrender.experiments.optim`: MuonAdamW's update equals torch's own `Muon` (Moonshot's RMS-matched
step) on the hidden matrices and torch's `AdamW` on the rest; its Newton–Schulz orthogonalisation,
direct and in Gram form, is the published quintic applied to the singular values (float64 SVD), and
its FLOP count is torch's FlopCounterMode's; the split between the two follows the model; two
DDP ranks sharing the Newton–Schulz work step exactly like one process doing all of it."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seqrender.experiments.local_launch import free_port
from seqrender.experiments.optim import (MuonAdamW, build_optimizer, hidden_matrices, newton_schulz_flops,
                                         orthogonalise, split_by_cost)
from seqrender.models import FourReal, FourRealConfig, Kaleido, KaleidoConfig

SHAPES = [(128, 344), (688, 128), (64, 64), (50,), (3, 8)]  # three Muon matrices; a vector and a matrix for AdamW


def _train(make_optimizer, steps: int = 3, shapes=SHAPES) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    optimizer = make_optimizer(params)
    grads = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=grads)
        optimizer.step()
    return [p.detach() for p in params]


class _TorchPair:
    """torch.optim.Muon (RMS-matched to AdamW) on the first three, torch.optim.AdamW on the others."""
    def __init__(self, params, **kw):
        self.muon = torch.optim.Muon(params[:3], lr=kw["lr"], weight_decay=kw["weight_decay"],
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(params[3:], **kw)

    def step(self):
        self.muon.step()
        self.adamw.step()


def test_update_matches_torch_muon_and_adamw():
    kw = dict(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
    start = _train(lambda params: torch.optim.SGD(params, lr=0.0))
    ours = _train(lambda params: MuonAdamW([{"params": params[:3], "muon": True},
                                            {"params": params[3:], "muon": False}], **kw))
    theirs = _train(lambda params: _TorchPair(params, **kw))
    for shape, s, a, b in zip(SHAPES, start, ours, theirs):
        moved = (b - s).abs().max()
        assert moved > 1e-2, shape
        if len(shape) == 2 and shape != (3, 8):
            # torch orthogonalises in bf16 (8 bits of mantissa), ours in fp32
            assert (a - b).abs().max() < 0.03 * moved, shape
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (48, 48)])
def test_orthogonalise_keeps_singular_vectors_and_flattens_values(shape):
    gen = torch.Generator().manual_seed(2)
    u0, _, vh0 = torch.linalg.svd(torch.randn(shape, dtype=torch.float64, generator=gen), full_matrices=False)
    grad = u0 @ torch.diag(torch.logspace(1, 0, min(shape), dtype=torch.float64)) @ vh0  # singular values 10 ... 1
    u, s, vh = torch.linalg.svd(grad, full_matrices=False)
    out = orthogonalise(grad)
    core = u.T @ out @ vh.T                                       # diagonal when the vectors are kept
    diag = torch.diagonal(core)
    assert (core - torch.diag(diag)).abs().max() < 1e-10
    assert diag.min() > 0.5 and diag.max() < 1.5                  # the quintic's band around 1


def _quintic_on_singular_values(grad: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The float64 reference: Newton–Schulz maps grad = U S Vᵀ to U p(...p(S/‖grad‖_F)...) Vᵀ with the
    scalar quintic p(s) = a s + b s³ + c s⁵ applied `steps` times to each singular value."""
    a, b, c = 3.4445, -4.7750, 2.0315            # Keller Jordan's coefficients (torch.optim.Muon's)
    u, s, vh = torch.linalg.svd(grad.double(), full_matrices=False)
    s = s / s.norm()
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return u @ torch.diag(s) @ vh


@pytest.mark.parametrize("form", ["auto", "direct", "gram"])
@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (48, 48), (16, 160), (40, 50)])
def test_both_newton_schulz_forms_are_the_quintic_on_singular_values(shape, form):
    grad = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    reference = _quintic_on_singular_values(grad)
    torch.testing.assert_close(orthogonalise(grad, form=form), reference, rtol=0, atol=1e-10)
    # float32, as the optimiser runs: rounding only (the Gram form's growing Q_k stays well inside it)
    torch.testing.assert_close(orthogonalise(grad.float(), form=form).double(), reference, rtol=0, atol=2e-5)
    with pytest.raises(ValueError, match="auto, direct or gram"):
        orthogonalise(grad, form="svd")
    with pytest.raises(ValueError, match="auto, direct or gram"):
        newton_schulz_flops(shape, form="svd")
    with pytest.raises(ValueError, match="auto, direct or gram"):     # refused when built, not at step 1
        MuonAdamW([{"params": [torch.nn.Parameter(grad.float())], "muon": True}], lr=1e-2,
                  weight_decay=0.0, betas=(0.9, 0.99), ns_form="svd")


@pytest.mark.parametrize("shape", [(16, 160), (160, 16), (40, 50), (48, 48), (128, 344)])
def test_newton_schulz_flops_counts_the_matmuls_of_the_chosen_form(shape):
    from torch.utils.flop_counter import FlopCounterMode
    for form in ("direct", "gram", "auto"):
        with FlopCounterMode(display=False) as counter:
            orthogonalise(torch.randn(shape), form=form)
        assert counter.get_total_flops() == newton_schulz_flops(shape, form=form), (shape, form)
    m, n = sorted(shape)
    # the Gram form is picked exactly where it is cheaper: wide matrices (n > 1.5 m)
    cheaper = min(("direct", "gram"), key=lambda f: newton_schulz_flops(shape, form=f))
    assert newton_schulz_flops(shape) == newton_schulz_flops(shape, form=cheaper)
    assert (cheaper == "gram") == (n > 1.5 * m)


def test_checkpoints_from_before_ns_form_resume():
    params = [torch.nn.Parameter(torch.randn(16, 48))]
    optimizer = MuonAdamW([{"params": params, "muon": True}], lr=1e-2, weight_decay=0.0, betas=(0.9, 0.99))
    params[0].grad = torch.randn(16, 48)
    optimizer.step()
    old = optimizer.state_dict()
    for group in old["param_groups"]:
        del group["ns_form"]                      # what a checkpoint written before the option holds
    resumed = MuonAdamW([{"params": params, "muon": True}], lr=1e-2, weight_decay=0.0, betas=(0.9, 0.99))
    resumed.load_state_dict(old)
    assert resumed.param_groups[0]["ns_form"] == "auto"
    resumed.step()


def test_groups_follow_the_model():
    for model in (Kaleido(KaleidoConfig(in_channels=3, hidden=32, heads=2, kv_heads=1, layers=2)),
                  FourReal(FourRealConfig(in_channels=3, hidden=32, heads=2, layers=2))):
        optimizer = build_optimizer(model, name="muon", lr=1e-3, weight_decay=0.0, betas=(0.9, 0.99))
        muon, other = (g["params"] for g in optimizer.param_groups)
        names = {id(p): n for n, p in model.named_parameters()}
        assert muon and all(names[id(p)].startswith("blocks.") and p.ndim == 2 for p in muon)
        assert {id(p) for p in muon} == {id(p) for p in hidden_matrices(model)}
        assert len(muon) + len(other) == len(list(model.parameters()))
        assert not any(n.startswith("blocks.") and n.endswith("weight") and "norm" not in n
                       and p.ndim == 2 for n, p in model.named_parameters() if id(p) in {id(q) for q in other})
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "muon": True}], lr=1e-3, weight_decay=0,
                  betas=(0.9, 0.99))


MAIN_JOB_SHAPES = [(128, 128)] * 6 + [(688, 128), (128, 344), (1152, 128)]   # one block of the main job


def test_split_by_cost_balances_the_ranks():
    shapes = MAIN_JOB_SHAPES * 4
    for ranks in (2, 3, 64):          # 64: more ranks than matrices, some own nothing
        owner = split_by_cost(shapes, ranks)
        load = [sum(newton_schulz_flops(s) for s, r in zip(shapes, owner) if r == k) for k in range(ranks)]
        assert set(owner) == set(range(min(ranks, len(shapes))))
        # longest-processing-time greedy: the busiest rank is within the largest matrix of the ideal share
        assert max(load) <= sum(load) / ranks + newton_schulz_flops((1152, 128))
    assert split_by_cost(shapes, 1) == [0] * len(shapes)


def _shared_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        kw = dict(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))

        def make(process_group, muon: int):
            return lambda params: MuonAdamW([{"params": params[:muon], "muon": True},
                                             {"params": params[muon:], "muon": False}], **kw,
                                            process_group=process_group)
        shared, alone = [], []
        for shapes, muon in ((MAIN_JOB_SHAPES[5:] + [(50,), (3, 8)], 4),   # split 1 : 3 by cost
                             ([(128, 128), (3, 8), (50,)], 1)):            # rank 1 has nothing to send
            shared += _train(make(dist.group.WORLD, muon), shapes=shapes)   # steps 2-3 reuse step 1's plan and buffers
            alone += _train(make(None, muon), shapes=shapes)
        torch.save({"shared": shared, "alone": alone}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ranks_sharing_newton_schulz_equal_one_process(tmp_path):
    mp.spawn(_shared_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in results:
        for shared, alone in zip(r["shared"], r["alone"]):
            assert torch.equal(shared, alone)      # bit-identical, not merely close
    for a, b in zip(results[0]["shared"], results[1]["shared"]):
        assert torch.equal(a, b)
