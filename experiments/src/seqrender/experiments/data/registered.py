"""Registers the datasets under registry kind "dataset" (Hydra group `dataset=`): `embedded`
(the procedural default), `blender` (real data in the Blender / NeRF-synthetic layout) and
`embedded4d` (procedural moving scenes on a view × time grid, for model=fourreal), `embedded_video`
(the same scenes as clips of a fixed camera, for Kaleido's video pre-training), and the
real-data formats of `scene_dataset.SceneDataset`: `llff`, `colmap`, `realestate10k`, `co3d`,
`nerfstudio` and `video`.
Builders are called as `build(split=..., views=..., seed=...)`."""

from seqrender.experiments.data.dataset import BlenderConfig, blender_dataset, embedded_dataset
from seqrender.experiments.data.dynamic import Embedded4DConfig, embedded4d_dataset
from seqrender.experiments.data.co3d import CO3DConfig, co3d_dataset
from seqrender.experiments.data.colmap import ColmapConfig, colmap_dataset
from seqrender.experiments.data.embedded import EmbeddedConfig
from seqrender.experiments.data.embedded_video import EmbeddedVideoConfig, embedded_video_dataset
from seqrender.experiments.data.llff import LLFFConfig, llff_dataset
from seqrender.experiments.data.nerfstudio import NerfstudioConfig, nerfstudio_dataset
from seqrender.experiments.data.realestate import RealEstate10KConfig, realestate10k_dataset
from seqrender.experiments.data.video import VideoConfig, video_dataset
from seqrender.models import registry

registry.register("dataset", "embedded", EmbeddedConfig, embedded_dataset)
registry.register("dataset", "blender", BlenderConfig, blender_dataset)
registry.register("dataset", "embedded4d", Embedded4DConfig, embedded4d_dataset)
registry.register("dataset", "embedded_video", EmbeddedVideoConfig, embedded_video_dataset)
registry.register("dataset", "llff", LLFFConfig, llff_dataset)
registry.register("dataset", "colmap", ColmapConfig, colmap_dataset)
registry.register("dataset", "realestate10k", RealEstate10KConfig, realestate10k_dataset)
registry.register("dataset", "co3d", CO3DConfig, co3d_dataset)
registry.register("dataset", "nerfstudio", NerfstudioConfig, nerfstudio_dataset)
registry.register("dataset", "video", VideoConfig, video_dataset)
