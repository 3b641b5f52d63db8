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
"""
from __future__ import annotations

import math

import torch
from torch.optim.adam import adam
from torch import nn

# Keller Jordan's quintic coefficients (torch.optim.Muon's defaults)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(grad: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """(A, B) -> (A, B): ≈ U Vᵀ of grad = U S Vᵀ (singular values land in about [0.5, 1.5]), by the
    quintic Newton–Schulz iteration, in grad's dtype."""
    a, b, c = NS_COEFFICIENTS
    x = grad.T if grad.shape[0] > grad.shape[1] else grad     # (m, n), m <= n: the Gram matrix is the small one
    x = x / x.norm().clamp(min=eps)                            # spectral norm <= 1
    for _ in range(steps):
        gram = x @ x.T                                         # (m, m)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if grad.shape[0] > grad.shape[1] else x


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the param groups with `muon=True` (2-D), AdamW (torch's update) on the others."""

    def __init__(self, groups: list[dict], *, lr: float, weight_decay: float, betas: tuple[float, float],
                 momentum: float = 0.95, ns_steps: int = 5, eps: float = 1e-8):
        for group in groups:
            if group.get("muon") and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon takes 2-D parameters only")
        super().__init__(groups, dict(lr=lr, weight_decay=weight_decay, betas=betas, momentum=momentum,
                                      ns_steps=ns_steps, eps=eps, muon=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                (self._muon if group["muon"] else self._adamw)(p, self.state[p], group)
        return loss

    @staticmethod
    def _muon(p: torch.Tensor, state: dict, group: dict) -> None:
        grad, mu = p.grad, group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - mu)
        update = orthogonalise(grad.lerp(buf, mu), group["ns_steps"])   # Nesterov
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(p.shape)))

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
                    betas: tuple[float, float]) -> torch.optim.Optimizer:
    """`name` "adamw": AdamW on every parameter; "muon": MuonAdamW, Muon on `hidden_matrices`."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    hidden = {id(p) for p in hidden_matrices(model)}
    groups = [{"params": [p for p in model.parameters() if id(p) in hidden], "muon": True},
              {"params": [p for p in model.parameters() if id(p) not in hidden], "muon": False}]
    return MuonAdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, betas=betas)
