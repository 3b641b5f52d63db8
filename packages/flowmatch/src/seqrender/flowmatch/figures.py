"""Figures of what each option does: ``python -m seqrender.flowmatch.figures --out DIR``.

Writes ``samplers.png`` (the six timestep densities of Kaleido Fig. 6, analytic pdf over a histogram
of draws), ``schedules.png`` (inference times and step sizes of every schedule) and ``figures.json``
(the numbers behind them). Needs matplotlib, which is not a dependency of the package.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .schedules import make_schedule
from .timesteps import LogitNormalSampler, ModeSampler, ShiftedSampler, UniformSampler

FIG6_PANELS = {
    "(a) Logit-Normal (0, 1)": LogitNormalSampler(0.0, 1.0),
    "(b) Mode (scale 0.8)": ModeSampler(0.8),
    "(c) Mode (scale 0.8) + shift 3": ShiftedSampler(ModeSampler(0.8), 3.0),
    "(d) Uniform": UniformSampler(),
    "(e) Uniform + shift 3": ShiftedSampler(UniformSampler(), 3.0),
    "(f) Uniform + shift 5": ShiftedSampler(UniformSampler(), 5.0),
}
SCHEDULES = {
    "linspace": dict(name="linspace"),
    "trailing": dict(name="trailing"),
    "linear_quadratic": dict(name="linear_quadratic"),
    "linspace + shift 3": dict(name="linspace", shift=3.0),
}


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("seqrender.flowmatch.figures needs matplotlib: pip install matplotlib") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samplers(out: Path, *, num_samples: int, seed: int) -> dict:
    """Six density panels; returns {panel: {mean, mass_above_half}}."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
    grid = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    metrics = {}
    for ax, (title, sampler) in zip(axes.flat, FIG6_PANELS.items()):
        draws = sampler.sample(num_samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        ax.hist(draws.numpy(), bins=100, range=(0, 1), density=True, color="#9ecae1", label="samples")
        ax.plot(grid.numpy(), sampler.pdf(grid).numpy(), color="#08519c", lw=2, label="pdf")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        metrics[title] = {"mean": draws.mean().item(), "mass_above_half": (draws > 0.5).double().mean().item()}
    for ax in axes[1]:
        ax.set_xlabel("t  (0 = data, 1 = noise)")
    axes[0, 0].legend()
    fig.suptitle("Training timestep densities (Kaleido Fig. 6)")
    fig.tight_layout()
    fig.savefig(out / "samplers.png", dpi=110)
    plt.close(fig)
    return metrics


def plot_schedules(out: Path, *, steps: int) -> dict:
    """Times t_i vs step and step sizes; returns {schedule: [t_0 … t_n]}."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    values = {}
    for label, spec in SCHEDULES.items():
        spec = dict(spec)
        ts = make_schedule(spec.pop("name"), steps, **spec)
        values[label] = ts.tolist()
        left.plot(range(steps + 1), ts.numpy(), marker=".", label=label)
        right.semilogy(range(steps), (-ts.diff()).numpy(), marker=".", label=label)
    left.set(xlabel="step i", ylabel="t_i", title=f"inference schedules, n = {steps}")
    right.set(xlabel="step i", ylabel="t_i − t_(i+1)", title="step sizes")
    left.legend()
    fig.tight_layout()
    fig.savefig(out / "schedules.png", dpi=110)
    plt.close(fig)
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for the PNGs and JSON")
    parser.add_argument("--steps", type=int, default=50, help="number of inference steps shown")
    parser.add_argument("--samples", type=int, default=200_000, help="draws per sampler histogram")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "samplers": plot_samplers(args.out, num_samples=args.samples, seed=args.seed),
        "schedules": plot_schedules(args.out, steps=args.steps),
    }
    (args.out / "figures.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {args.out / 'samplers.png'}, {args.out / 'schedules.png'}, {args.out / 'figures.json'}")


if __name__ == "__main__":
    main()
