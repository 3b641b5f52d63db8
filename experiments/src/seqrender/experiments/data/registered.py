"""Registers the datasets under registry kind "dataset" (Hydra group `dataset=`): `embedded`
(the procedural default) and `blender` (real data in the Blender / NeRF-synthetic layout).
Builders are called as `build(split=..., views=..., seed=...)`."""

from seqrender.experiments.data.dataset import BlenderConfig, blender_dataset, embedded_dataset
from seqrender.experiments.data.embedded import EmbeddedConfig
from seqrender.models import registry

registry.register("dataset", "embedded", EmbeddedConfig, embedded_dataset)
registry.register("dataset", "blender", BlenderConfig, blender_dataset)
