"""Registers the datasets under registry kind "dataset" (Hydra group `dataset=`): `embedded`
(the procedural default), `blender` (real data in the Blender / NeRF-synthetic layout) and
`embedded4d` (procedural moving scenes on a view × time grid, for model=fourreal).
Builders are called as `build(split=..., views=..., seed=...)`."""

from seqrender.experiments.data.dataset import BlenderConfig, blender_dataset, embedded_dataset
from seqrender.experiments.data.dynamic import Embedded4DConfig, embedded4d_dataset
from seqrender.experiments.data.embedded import EmbeddedConfig
from seqrender.models import registry

registry.register("dataset", "embedded", EmbeddedConfig, embedded_dataset)
registry.register("dataset", "blender", BlenderConfig, blender_dataset)
registry.register("dataset", "embedded4d", Embedded4DConfig, embedded4d_dataset)
