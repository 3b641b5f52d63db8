"""Which models fit which datasets: a "multiview" model (Kaleido) trains on multi-view scenes, a
"grid" model (4Real-Video-V2, FourRealConfig or a subclass, and the reconstructor "recon") on view × time
grids; a model config class may declare its layout in a `layout` class attribute. A dataset's config
class declares its layout in a `layout` class attribute ("multiview" when absent)."""
from __future__ import annotations

from seqrender.models import registry
from seqrender.models.fourreal import FourRealConfig

DESCRIPTIONS = {"multiview": "a multi-view dataset", "grid": "a view × time (4D) grid dataset"}


def model_layout(name: str) -> str:
    """The config class's `layout` attribute if it has one, else "grid" for 4Real-Video-V2 configs."""
    cls = registry.config_class("model", name)
    return getattr(cls, "layout", None) or ("grid" if issubclass(cls, FourRealConfig) else "multiview")


def dataset_layout(name: str) -> str:
    return getattr(registry.config_class("dataset", name), "layout", "multiview")


def dataset_positions(name: str) -> str:
    """How a dataset's frames are positioned: "pose" (3D scenes) or "time" (video clips, θ_t, no poses);
    a dataset's config class declares it in a `positions` class attribute ("pose" when absent)."""
    return getattr(registry.config_class("dataset", name), "positions", "pose")


def mismatch(model: str, dataset: str) -> str | None:
    """None if model `model` can train on dataset `dataset`, else one line saying what fits."""
    need, have = model_layout(model), dataset_layout(dataset)
    if need == have:
        return None
    fitting = [d for d in registry.names("dataset") if dataset_layout(d) == need]
    return (f"model {model!r} needs {DESCRIPTIONS[need]} but dataset {dataset!r} is {DESCRIPTIONS[have]}; "
            f"datasets that fit: {', '.join(fitting)}")
