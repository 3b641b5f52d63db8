"""Registers the built-in components (imported by ``seqrender.models``).

Builder signatures, by kind (what `registry.build(kind, name, cfg, **kwargs)` calls):
- posenc:   builder(cfg, *, head_dim) -> SceneEncoding           (seqrender.posenc)
- sampler:  builder(cfg) -> TimestepSampler (training t ~ p(t))  (seqrender.flowmatch)
- schedule: builder(cfg) -> (num_steps + 1,) decreasing 1 -> 0   (seqrender.flowmatch)
- solver:   builder(cfg) -> sample(velocity_fn, noise, schedule, **kw) with the solver bound
- model:    builder(cfg, **kwargs) -> nn.Module                   (Kaleido, FourReal)
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Literal

from seqrender import flowmatch
from seqrender.models import registry
from seqrender.models.blocks import check_choice
from seqrender.models.fourreal import FourReal, FourRealConfig
from seqrender.models.kaleido import Kaleido, KaleidoConfig
from seqrender.models.reconstruction import ReconModelConfig, build_recon
from seqrender.posenc import FREQUENCIES, KINDS, make_scene_encoding

@dataclass
class PosencConfig:
    """The built-in scene encodings' options (head_dim comes from the model).

    frequencies: band family of the angles, "geometric" (fractional, non-aliasing; default),
    "integer" (SO(2) harmonics k·θ, which wrap) or "wide" (geometric low bands, sharper top bands);
    see seqrender.posenc.unified.
    """

    frequencies: Literal["geometric", "integer", "wide"] = "geometric"

    def __post_init__(self):
        check_choice("PosencConfig", "frequencies", self.frequencies, FREQUENCIES)


def build_posenc(kind: str, cfg: PosencConfig, *, head_dim: int):
    return make_scene_encoding(kind, head_dim, frequencies=(cfg or PosencConfig()).frequencies)


@dataclass
class UniformSamplerConfig:
    shift: float = 1.0


@dataclass
class LogitNormalSamplerConfig:
    mean: float = 0.0
    std: float = 1.0
    shift: float = 1.0


@dataclass
class ModeSamplerConfig:
    """Kaleido's training sampler (§3.2.3): mode, scale 0.8, shifted toward noise by σ = 3."""

    scale: float = 0.8
    shift: float = 3.0


def build_sampler(name: str, cfg) -> flowmatch.TimestepSampler:
    return flowmatch.make_timestep_sampler(name, **dataclasses.asdict(cfg))


@dataclass
class ScheduleConfig:
    num_steps: int = 50
    shift: float = 1.0


@dataclass
class LinearQuadraticScheduleConfig:
    num_steps: int = 50
    threshold_noise: float = 0.025
    shift: float = 1.0


def build_schedule(name: str, cfg):
    options = dataclasses.asdict(cfg)
    return flowmatch.make_schedule(name, options.pop("num_steps"), **options)


@dataclass
class SolverConfig:
    """The ODE solvers take their options (guidance, clean/keep_mask) per call."""


def build_solver(name: str, cfg: SolverConfig):
    return functools.partial(flowmatch.sample, solver=name)


def build_kaleido(cfg: KaleidoConfig, *, posenc: str = "gta", posenc_cfg=None) -> Kaleido:
    """Kaleido with its scene encoding taken from the posenc registry (so plugins work too)."""
    encoding = registry.build("posenc", posenc, posenc_cfg, head_dim=cfg.head_dim)
    return Kaleido(cfg, posenc=encoding)


def build_fourreal(cfg: FourRealConfig) -> FourReal:
    return FourReal(cfg)


# Registered once, when seqrender.models is first imported.
for kind in KINDS:
    registry.register("posenc", kind, PosencConfig, functools.partial(build_posenc, kind))
for name, config_cls in (("uniform", UniformSamplerConfig), ("logit_normal", LogitNormalSamplerConfig),
                         ("mode", ModeSamplerConfig)):
    registry.register("sampler", name, config_cls, functools.partial(build_sampler, name))
for name, config_cls in (("linspace", ScheduleConfig), ("trailing", ScheduleConfig),
                         ("linear_quadratic", LinearQuadraticScheduleConfig)):
    registry.register("schedule", name, config_cls, functools.partial(build_schedule, name))
for name in ("euler", "heun"):
    registry.register("solver", name, SolverConfig, functools.partial(build_solver, name))
registry.register("model", "kaleido", KaleidoConfig, build_kaleido)

registry.register("model", "fourreal", FourRealConfig, build_fourreal)
registry.register("model", "recon", ReconModelConfig, build_recon)
