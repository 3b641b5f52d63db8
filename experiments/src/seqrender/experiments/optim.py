"""The training optimiser (`trainer.optimizer`): AdamW, or Muon on the transformer blocks' matrices
with AdamW on everything else.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"; the update of `torch.optim.Muon`)
replaces a matrix's momentum by its orthogonalised version (quintic Newton–Schulz), so every
direction of the update moves at the same rate. It is meant for hidden 2-D weights only: the patch
embedding, the output layer, biases, norms, registers and convolutions keep AdamW. Both live in one
`torch.optim.Optimizer` (param groups marked `muon`), so the LR scheduler, gradient clipping and the
checkpoint's single optimiser state serve both unchanged.

Two choices differ from `torch.optim.Muon`:
- Newton–Schulz runs in the parameter's dtype. torch's runs in bf16, which is ~500× slower than
  fp32 matmul on CPUs without bf16 units (this project's CI machine).
- The step size uses Moonshot's RMS match (`adjust_lr_fn="match_rms_adamw"`: lr · 0.2 · √max(A, B)),
  so one `trainer.lr` and one schedule serve both groups, as "Muon is Scalable for LLM Training"
  (Liu et al. 2025) reports for AdamW-tuned learning rates.

Under DDP (`process_group` given) every rank holds the same gradients, so the ranks share the
Newton–Schulz work instead of repeating it (as Moonshot's distributed Muon does): each rank
orthogonalises the matrices `split_by_cost` gives it and broadcasts them to the others. The result
is bit-identical to every rank doing all the work.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.optim.adam import adam
from torch import nn

# Keller Jordan's quintic coefficients (torch.optim.Muon's defaults)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_FORMS = ("auto", "direct", "gram")


def orthogonalise(grad: torch.Tensor, steps: int = 5, eps: float = 1e-7, form: str = "auto") -> torch.Tensor:
    """(A, B) -> (A, B): ≈ U Vᵀ of grad = U S Vᵀ (singular values land in about [0.5, 1.5]), by the
    quintic Newton–Schulz iteration X <- aX + b(XXᵀ)X + c(XXᵀ)²X, in grad's dtype.

    Every iterate is X_k = Q_k X_0 with Q_k a polynomial of the Gram matrix G = X_0 X_0ᵀ (m, m), so for
    a wide matrix (n > 1.5 m) the iteration runs on (m, m) matrices only and touches the (m, n) ones
    twice (`_gram_form`): the same maths, fewer FLOPs (`newton_schulz_flops`; 2.4× faster on the
    main job's (1152, 128) adaLN matrices, `benchmarks/optimizer.py`). `form`: "auto" (the cheaper),
    "direct" or "gram"."""
    x = grad.T if grad.shape[0] > grad.shape[1] else grad     # (m, n), m <= n: the Gram matrix is the small one
    run = _gram_form if _resolve_form(form, *x.shape, steps) == "gram" else _direct_form
    x = run(x / x.norm().clamp(min=eps), steps)                # spectral norm <= 1 going in
    return x.T if grad.shape[0] > grad.shape[1] else x


def _check_form(form: str) -> None:
    if form not in NS_FORMS:
        raise ValueError(f"Newton–Schulz form must be auto, direct or gram, not {form!r}")


def _resolve_form(form: str, m: int, n: int, steps: int) -> str:
    """"auto" -> the form with fewer FLOPs on an (m, n) matrix ("gram" once n > ~1.5 m); others as given."""
    _check_form(form)
    if form != "auto":
        return form
    if steps < 1:                                              # no iteration: the input, at no cost
        return "direct"
    return "gram" if _gram_flops(m, n, steps) < _direct_flops(m, n, steps) else "direct"


def _direct_form(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(m, n) -> (m, n): the iteration as written (Keller Jordan's; torch.optim.Muon's)."""
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T                                         # (m, m)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


def _gram_form(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(m, n) -> (m, n): the same iterates as `_direct_form`, kept as X_k = Q_k X_0. With R_k = X_k X_kᵀ
    and T_k = aI + bR_k + cR_k² (all polynomials of G, so they commute): Q_{k+1} = T_k Q_k and
    R_{k+1} = T_k R_k T_k."""
    a, b, c = NS_COEFFICIENTS
    r, q = x @ x.T, None                                       # R_0 = G (m, m); Q_0 = I
    for k in range(steps):
        t = torch.addmm(r, r, r, beta=b, alpha=c)
        t.diagonal().add_(a)                                   # T_k (m, m)
        q = t if q is None else t @ q
        if k < steps - 1:
            r = t @ r @ t
    return x if q is None else q @ x                           # steps = 0: X_0


def _direct_flops(m: int, n: int, steps: int) -> int:
    return steps * (4 * m * m * n + 2 * m ** 3)                # per step: the Gram, its square, (m, m) @ (m, n)


def _gram_flops(m: int, n: int, steps: int) -> int:
    # G and the final Q @ X: 4 m²n; R² every step; T @ Q after the first; T R T before the last
    return 4 * m * m * n + 2 * m ** 3 * (steps + (steps - 1) + 2 * (steps - 1))


def newton_schulz_flops(shape: tuple[int, int], steps: int = 5, form: str = "auto") -> int:
    """FLOPs of `orthogonalise` on an (A, B) matrix in that form (m = min(A, B), n = max)."""
    m, n = sorted(shape)
    flops = _gram_flops if _resolve_form(form, m, n, steps) == "gram" else _direct_flops
    return flops(m, n, steps)


def split_by_cost(shapes: list[tuple[int, int]], ranks: int) -> list[int]:
    """The rank that orthogonalises each matrix: largest first, each to the least-loaded rank so far
    (longest-processing-time greedy on Newton–Schulz FLOPs); the same answer on every rank."""
    load, owner = [0] * ranks, [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: (-newton_schulz_flops(shapes[i]), i)):
        owner[i] = min(range(ranks), key=lambda r: (load[r], r))
        load[owner[i]] += newton_schulz_flops(shapes[i])
    return owner


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the param groups with `muon=True` (2-D), AdamW (torch's update) on the others.
    `ns_form`: `orthogonalise`'s form (auto: the cheaper per shape). `process_group`: the DDP ranks that share the Newton–Schulz work (their gradients must be equal)."""

    def __init__(self, groups: list[dict], *, lr: float, weight_decay: float, betas: tuple[float, float],
                 momentum: float = 0.95, ns_steps: int = 5, ns_form: str = "auto", eps: float = 1e-8,
                 process_group=None):
        _check_form(ns_form)
        for group in groups:
            _check_form(group.get("ns_form", ns_form))
            if group.get("muon") and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon takes 2-D parameters only")
        super().__init__(groups, dict(lr=lr, weight_decay=weight_decay, betas=betas, momentum=momentum,
                                      ns_steps=ns_steps, ns_form=ns_form, eps=eps, muon=False))
        self.process_group = process_group
        self._plan_key, self._plan = None, None    # `_shares`: the sharing plan and its buffers

    def __setstate__(self, state):
        super().__setstate__(state)                # also what `load_state_dict` ends with:
        for group in self.param_groups:            # checkpoints from before `ns_form` resume as "auto"
            group.setdefault("ns_form", "auto")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                self._muon(params, group)
            else:
                for p in params:
                    self._adamw(p, self.state[p], group)
        return loss

    def _muon(self, params: list[torch.Tensor], group: dict) -> None:
        mu = group["momentum"]
        directions = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            state["momentum_buffer"].lerp_(p.grad, 1 - mu)
            directions.append(p.grad.lerp(state["momentum_buffer"], mu))    # Nesterov
        for p, update in zip(params, self._orthogonalise_all(directions, group["ns_steps"], group["ns_form"])):
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(p.shape)))

    def _orthogonalise_all(self, directions: list[torch.Tensor], steps: int, form: str) -> list[torch.Tensor]:
        """`orthogonalise` of each direction; shared between the ranks of `process_group`: each rank
        orthogonalises its share into its flat buffer, then broadcasts it to the others."""
        group = self.process_group
        if group is None or dist.get_world_size(group) == 1 or not directions:
            return [orthogonalise(d, steps, form=form) for d in directions]
        shares, updates = self._shares(directions)
        rank = dist.get_rank(group)
        for i in shares[rank][0]:
            updates[i].copy_(orthogonalise(directions[i], steps, form=form))
        for r, (_, flat) in enumerate(shares):  # each share sent once: fewer bytes than a zero-padded all-reduce
            if flat.numel():                    # (the plan is the same on every rank, so all skip alike)
                dist.broadcast(flat, src=dist.get_global_rank(group, r), group=group)
        return updates

    def _shares(self, directions: list[torch.Tensor]):
        """Per rank (its matrices' indices, one flat buffer of their updates) and each update as a view
        into its rank's buffer; planned by `split_by_cost` once per set of shapes, then reused."""
        key = tuple((tuple(d.shape), d.dtype, d.device) for d in directions)
        if self._plan_key != key:
            ranks = dist.get_world_size(self.process_group)
            owner = split_by_cost([tuple(d.shape) for d in directions], ranks)
            shares, updates = [], [None] * len(directions)
            for r in range(ranks):
                mine = [i for i, o in enumerate(owner) if o == r]
                flat = directions[0].new_empty(sum(directions[i].numel() for i in mine))
                for i, view in zip(mine, flat.split([directions[i].numel() for i in mine])):
                    updates[i] = view.view_as(directions[i])
                shares.append((mine, flat))
            self._plan_key, self._plan = key, (shares, updates)
        return self._plan

    @staticmethod
    def _adamw(p: torch.Tensor, state: dict, group: dict) -> None:
        """torch's own AdamW update (its functional form), on one parameter."""
        if not state:
            state.update(step=torch.zeros(()), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        adam([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
             foreach=False, decoupled_weight_decay=True, amsgrad=False, beta1=beta1, beta2=beta2,
             lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The 2-D weights of the linear layers inside `model.blocks` (the transformer's hidden layers)."""
    blocks = getattr(model, "blocks", None)
    return [] if blocks is None else [m.weight for m in blocks.modules() if isinstance(m, nn.Linear)]


def build_optimizer(model: nn.Module, *, name: str, lr: float, weight_decay: float,
                    betas: tuple[float, float], process_group=None, ns_form: str = "auto") -> torch.optim.Optimizer:
    """`name` "adamw": AdamW on every parameter; "muon": MuonAdamW, Muon on `hidden_matrices`, its
    Newton–Schulz (in `ns_form`, see `orthogonalise`) shared by the DDP ranks of `process_group`
    (None: this process does all of it)."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    hidden = {id(p) for p in hidden_matrices(model)}
    groups = [{"params": [p for p in model.parameters() if id(p) in hidden], "muon": True},
              {"params": [p for p in model.parameters() if id(p) not in hidden], "muon": False}]
    return MuonAdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, betas=betas,
                     process_group=process_group, ns_form=ns_form)
