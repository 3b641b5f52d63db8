"""The `render:` section of experiments/configs/render.yaml, validated with pydantic; the rest of the
composed config is the run config (seqrender.experiments.config) whose schedule, solver and seed
sample the views."""
from __future__ import annotations

from pydantic import Field, ValidationError

from seqrender.experiments.config import ConfigError, RunConfig, _first_error, _Strict, validate_config


class RenderConfig(_Strict):
    checkpoint: str                 # run dir (newest checkpoint), a step_* dir, or an ema .safetensors file
    scene: str                      # heldout:<i>, a Blender scene folder, or a folder of photos
    split: str                      # Blender scenes: transforms_<split>.json
    references: int = Field(ge=1)   # embedded / Blender scenes: input views, spread over the scene's views
    trajectory: str                 # orbit | spiral | interpolate | path/to/poses.json
    views: int = Field(ge=1)        # number of rendered views (ignored for a poses file)
    spiral_amplitude_deg: float = Field(ge=0, le=80)
    view_budget: int = Field(ge=0)  # views per pass (references + targets); 0: trainer.views of the checkpoint
    chunk_size: int = Field(ge=1)   # targets per pass when everything does not fit the budget
    max_references: int = Field(ge=1)  # references kept per pass (nearest cameras) when chunking
    guidance_scale: float | None = Field(default=None, ge=0)  # None: the checkpoint run's eval.guidance_scale
    seed: int
    fps: int = Field(gt=0)
    gif: bool
    mp4: bool
    progress: bool
    out: str                        # output folder; "" = the Hydra run dir
    recon_checkpoint: str = ""      # view × time checkpoints: a model=recon run -> Gaussians, .ply, video


def validate_render(raw: dict) -> tuple[RunConfig, RenderConfig]:
    """The composed config (plain dict) -> (run config, render config); ConfigError names the field."""
    raw = dict(raw)
    section = raw.pop("render", None)
    if not isinstance(section, dict):
        raise ConfigError("render: missing section (see experiments/configs/render.yaml)")
    run = validate_config(raw)
    try:
        return run, RenderConfig(**section)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, prefix="render")) from None


def guidance_scale(render: RenderConfig, trained: RunConfig) -> float:
    """`render.guidance_scale`, or (None) the scale the checkpoint's run evaluated with."""
    return trained.eval.guidance_scale if render.guidance_scale is None else render.guidance_scale
