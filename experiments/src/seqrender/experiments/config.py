"""The run configuration, validated with pydantic once, before anything is built.

`validate_config(raw)` takes the composed Hydra config (as a plain dict) and returns a `RunConfig`:
the trainer and eval sections are pydantic models with constraints; every registry group
(`model`, `posenc`, ...) is `{"name": ..., **fields}` and its fields are validated against the
config dataclass registered under that name (pydantic `TypeAdapter`). The first problem is raised as
`ConfigError("trainer.lr: Input should be greater than 0 (got -1.0)")`, naming the field path.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from seqrender.experiments.layouts import mismatch, model_layout
from seqrender.models import registry

GridSetting = Literal["row->grid", "column->grid", "row+column->grid"]  # 4Real: what of the grid is given
# n->m: Kaleido (n references -> m targets); *->grid: 4Real-Video-V2; grid->novel: reconstruction ("recon")
Setting = Literal["1->3", "3->1", GridSetting, "grid->novel"]
GRID_SETTINGS = get_args(GridSetting)
LAYOUT_GRID_SETTINGS = (*GRID_SETTINGS, "grid->novel")  # the settings of models with the "grid" layout
COMPONENT_KINDS = ("model", "posenc", "sampler", "schedule", "solver", "dataset")


class ConfigError(ValueError):
    """A user error in the composed config; the message is one line starting with the field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainerConfig(_Strict):
    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    views: int = Field(ge=2)
    lr: float = Field(gt=0)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on the blocks' matrices, AdamW on the rest (.optim)
    weight_decay: float = Field(ge=0)
    warmup_steps: int = Field(ge=0)
    min_lr_ratio: float = Field(ge=0, le=1)
    betas: tuple[float, float]
    grad_clip: float = Field(gt=0)
    ema_decay: float = Field(ge=0, lt=1)
    ema_start: int = Field(ge=0)
    cond_drop_prob: float = Field(ge=0, lt=1)
    random_masking: bool
    view_sampling: Literal["exponential", "fixed"] = "exponential"  # n ~ 2^-n references, or always n = fixed_references
    fixed_references: int = Field(default=1, ge=1)  # references per sample when view_sampling = fixed
    checkpoint_every: int = Field(gt=0)
    keep_checkpoints: int = Field(ge=1)
    log_every: int = Field(gt=0)
    cpu: bool
    progress: bool
    activation_checkpointing: bool = False
    max_nonfinite_steps: int = Field(default=0, ge=0)
    grad_accum: int = Field(default=1, ge=1)      # micro-batches per optimiser step (seqrender.experiments.scale)
    compile: bool = False                          # torch.compile the model
    compile_backend: str = "inductor"              # torch.compile backend ("eager"/"aot_eager": debugging)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # accelerate mixed precision (fp16: loss scaling)
    # 4Real grids: each training sample draws its conditioning uniformly from these (repeat one to weight it)
    grid_settings: tuple[GridSetting, ...] = Field(default=("row+column->grid",), min_length=1)
    grid_residual: bool = False  # 4Real grids: generate each unknown cell minus its copy baseline (grid.copy_anchor)
    grid_anchor: Literal["column", "row"] = "column"  # the copy the residual is taken from when both are given
    stream: Literal["auto", "on", "off"] = "auto"  # read training samples from disk (auto: real-data formats)
    data_workers: int = Field(default=2, ge=0)     # DataLoader worker processes when streaming (0: in-process)
    init_from: str | None = None  # run dir, step_* dir or model .safetensors: initial weights (curriculum)
    sharding: Literal["none", "fsdp"] = "none"    # fsdp: FSDP2 through accelerate (seqrender.experiments.sharding)
    tracker: Literal["tensorboard", "wandb", "none"] = "tensorboard"  # seqrender.experiments.tracking
    local_processes: int = Field(default=1, ge=1)  # data-parallel ranks `run.py` starts on this machine

    @model_validator(mode="after")
    def _processes_divide_batch(self) -> "TrainerConfig":
        if self.batch_size % self.local_processes:
            raise ValueError(f"local_processes={self.local_processes} must divide batch_size={self.batch_size}")
        return self

    @model_validator(mode="after")
    def _accumulation_divides_batch(self) -> "TrainerConfig":
        if self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum={self.grad_accum} must divide batch_size={self.batch_size}")
        return self

    @model_validator(mode="after")
    def _muon_sees_whole_matrices(self) -> "TrainerConfig":
        if self.optimizer == "muon" and self.sharding == "fsdp":
            raise ValueError("optimizer=muon orthogonalises whole matrices; it cannot run on FSDP shards "
                             "(use sharding=none or optimizer=adamw)")
        return self

    @model_validator(mode="after")
    def _fixed_references_leave_a_target(self) -> "TrainerConfig":
        if self.view_sampling == "fixed" and self.fixed_references >= self.views:
            raise ValueError(f"fixed_references={self.fixed_references} must be below views={self.views} "
                             "(at least one target per sample)")
        return self

    @property
    def fixed_references_or_none(self) -> int | None:
        """The fixed number of references per training sample, or None for the exponential π(n)."""
        return self.fixed_references if self.view_sampling == "fixed" else None


class VAESettings(_Strict):
    """Latent-space training (seqrender.experiments.latent): images are encoded by a frozen local
    diffusers-format AutoencoderKL before noising; the model's in_channels must be its latent channels."""

    enabled: bool = False
    path: str | None = None  # local folder with diffusion_pytorch_model.safetensors + config.json
    cache: str | None = None  # folder of precomputed training latents (latent_cache.py); None: encode on the fly

    @model_validator(mode="after")
    def _path_when_enabled(self) -> "VAESettings":
        if self.enabled and not self.path:
            raise ValueError("path is required when vae.enabled is true (a local diffusers AutoencoderKL folder; "
                             "weights are never downloaded)")
        return self


class EvalConfig(_Strict):
    num_items: int = Field(gt=0)
    settings: tuple[Setting, ...] = Field(min_length=1)
    guidance_scale: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    seed: int
    sample_rows: int = Field(ge=0)
    bootstrap_samples: int = Field(default=2000, ge=100)  # resamples of the items for the 95 % intervals
    orbit: bool = True      # Kaleido: orbit.png, 8 generated views around held-out scenes
    # Kaleido: the settings (of `settings`) that also get the `shuffled_references` row; None: all
    shuffled_settings: tuple[Setting, ...] | None = None
    milestones: tuple[int, ...] = ()  # training steps at which the EMA is also scored (milestones.json)
    schedules: tuple[str, ...] = ()   # also score the EMA under each of these schedules, same NFE ("schedules" in metrics.json)

    @field_validator("schedules")
    @classmethod
    def _schedules_registered(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in registry.names("schedule"):
                raise ValueError(f"unknown schedule {name!r}; registered: {', '.join(registry.names('schedule'))}")
        return names
    baseline_iterations: int = Field(default=100, ge=0)  # recon: Adam steps of the per-scene Gaussian fit


@dataclasses.dataclass(frozen=True)
class Component:
    """A registry choice: `registry.build(kind, name, config, **kw)` builds it."""

    kind: str
    name: str
    config: Any

    def build(self, **kwargs: Any) -> Any:
        return registry.build(self.kind, self.name, self.config, **kwargs)


class RunConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    seed: int
    threads: int = Field(ge=0)
    trainer: TrainerConfig
    eval: EvalConfig
    model: Component
    posenc: Component
    sampler: Component
    schedule: Component
    solver: Component
    dataset: Component
    vae: VAESettings = VAESettings()
    task: str | None = None  # a registered task (seqrender.experiments.tasks); None: the model's layout

    @field_validator("task")
    @classmethod
    def _task_is_registered(cls, task: str | None) -> str | None:
        from seqrender.experiments.tasks import TASKS, task_names

        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; registered: {', '.join(task_names())}")
        return task

    @model_validator(mode="after")
    def _views_cover_settings(self) -> "RunConfig":
        grid = model_layout(self.model.name) == "grid"
        for setting in self.eval.settings:
            if (setting in LAYOUT_GRID_SETTINGS) != grid:
                raise ValueError(f"eval setting {setting} does not apply to model {self.model.name!r}")
            if not grid and sum(map(int, setting.split("->"))) > self.trainer.views:
                raise ValueError(f"eval setting {setting} needs more views than trainer.views")
        return self


def validate_config(raw: dict[str, Any]) -> RunConfig:
    """Validate the composed config (plain dict, `hydra` key excluded) into a RunConfig."""
    raw = {k: v for k, v in raw.items() if k != "hydra"}
    components = {}
    for kind in COMPONENT_KINDS:
        if not isinstance(raw.get(kind), dict):
            raise ConfigError(f"{kind}: missing config group (choose one of: {', '.join(registry.names(kind))})")
        components[kind] = validate_component(kind, raw[kind])
    problem = mismatch(components["model"].name, components["dataset"].name)
    if problem:
        raise ConfigError(f"dataset: {problem}")
    try:
        return RunConfig(**{**raw, **components})
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def validate_component(kind: str, node: dict[str, Any]) -> Component:
    """`{"name": ..., **fields}` -> Component with the registered dataclass instance as config."""
    fields = dict(node)
    name = fields.pop("name", None)
    if name not in registry.names(kind):
        raise ConfigError(f"{kind}.name: unknown {kind} {name!r}; registered: {', '.join(registry.names(kind))}")
    cls = registry.config_class(kind, name)
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ConfigError(f"{kind}.{unknown[0]}: not a field of {kind} '{name}'; "
                          f"allowed: {', '.join(sorted(allowed)) or '(none)'}")
    try:
        config = TypeAdapter(cls).validate_python(fields)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, prefix=kind)) from None
    return Component(kind, name, config)


def _first_error(exc: ValidationError, *, prefix: str = "") -> str:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
    return f"{path or 'config'}: {err['msg']}{got}"
