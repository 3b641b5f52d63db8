"""seqrender.flowmatch: rectified-flow paths, timestep samplers, inference schedules, ODE solvers, CFG.

Convention: z_t = (1 − t)·x + t·ε, t = 1 is noise, t = 0 is data, velocity v = ε − x.
"""

from .analytic import GaussianMixture1D
from .guidance import guided_velocity
from .path import convert_prediction, interpolate, masked_mean, masked_mse, velocity_target
from .schedules import (
    SCHEDULE_NAMES,
    linear_quadratic_schedule,
    linspace_schedule,
    make_schedule,
    shift_schedule,
    trailing_schedule,
)
from .shift import shift_timesteps
from .solvers import EVALUATIONS_PER_STEP, SOLVERS, euler_step, heun_step, sample
from .timesteps import (
    SAMPLER_NAMES,
    LogitNormalSampler,
    ModeSampler,
    ShiftedSampler,
    TimestepSampler,
    UniformSampler,
    make_timestep_sampler,
)

__all__ = [
    "EVALUATIONS_PER_STEP",
    "GaussianMixture1D",
    "LogitNormalSampler",
    "ModeSampler",
    "SAMPLER_NAMES",
    "SCHEDULE_NAMES",
    "SOLVERS",
    "ShiftedSampler",
    "TimestepSampler",
    "UniformSampler",
    "convert_prediction",
    "euler_step",
    "guided_velocity",
    "heun_step",
    "interpolate",
    "linear_quadratic_schedule",
    "linspace_schedule",
    "make_schedule",
    "make_timestep_sampler",
    "masked_mean",
    "masked_mse",
    "sample",
    "shift_schedule",
    "shift_timesteps",
    "trailing_schedule",
    "velocity_target",
]
