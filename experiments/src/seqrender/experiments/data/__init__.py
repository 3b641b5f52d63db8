"""Data for seqrender experiments: a procedural renderer, the embedded default dataset, and the
Blender / NeRF-synthetic reader it shares with real data. Cameras follow SPEC §4 (OpenCV
world-to-camera extrinsics, pixel intrinsics); images are float32 in [0, 1]."""

from seqrender.experiments.data.blender import (BlenderCameras, BlenderViews, load_scene, load_views,
                                                read_cameras, write_scene)
from seqrender.experiments.data.cameras import look_at_w2c
from seqrender.experiments.data import registered  # noqa: F401  (registry kind "dataset")
from seqrender.experiments.data.dynamic import Embedded4DConfig, GridScenes, embedded4d_dataset
from seqrender.experiments.data.dataset import BlenderConfig, MultiViewDataset, blender_dataset, embedded_dataset
from seqrender.experiments.data.embedded import (EmbeddedConfig, default_data_root, default_dataset_dir,
                                                 embedded_scene_dirs, ensure_embedded_dataset)
from seqrender.experiments.data.renderer import RenderOutput, Shading, render
from seqrender.experiments.data.scenes import OrbitConfig, SceneConfig, make_scene, orbit_cameras
from seqrender.experiments.data.seeding import generator_from

__all__ = ["BlenderCameras", "BlenderConfig", "blender_dataset", "BlenderViews", "Embedded4DConfig", "EmbeddedConfig", "GridScenes", "embedded4d_dataset", "MultiViewDataset", "OrbitConfig", "RenderOutput",
           "SceneConfig", "Shading", "default_data_root", "default_dataset_dir", "embedded_dataset",
           "embedded_scene_dirs", "ensure_embedded_dataset", "generator_from",
           "load_scene", "load_views", "look_at_w2c", "make_scene", "orbit_cameras", "read_cameras", "render", "write_scene"]
