"""seqrender.posenc: RoPE (1D / axial N-D), CaPE, GTA and Plücker rays behind one small interface."""

from .camera import PoseOperators, apply_pose_blocks
from .conventions import (
    full_precision,
    intrinsics_from_fov,
    invert_se3,
    opencv_w2c_to_opengl_c2w,
    opengl_c2w_to_opencv_w2c,
    random_se3,
)
from .plucker import ORDERS, convert_plucker_order, pixel_grid, plucker_rays, relative_to_first
from .protocol import IdentityTransform, PositionalTransform, SceneEncoding
from .rope import FAMILIES, LAYOUTS, apply_rope, rope_angles, rope_cis, rope_frequencies
from .transform import BlockTransform, PoseBlocks, Rotary
from .unified import (
    FREQUENCIES,
    KINDS,
    KaleidoEncoding,
    frame_angles,
    grid_angles,
    make_scene_encoding,
    normalise_translations,
)

__all__ = [
    "FAMILIES", "FREQUENCIES", "KINDS", "LAYOUTS", "ORDERS",
    "BlockTransform", "IdentityTransform", "KaleidoEncoding", "PoseBlocks", "PoseOperators",
    "PositionalTransform", "Rotary", "SceneEncoding",
    "apply_pose_blocks", "apply_rope", "convert_plucker_order", "frame_angles", "full_precision", "grid_angles",
    "intrinsics_from_fov", "invert_se3", "make_scene_encoding", "normalise_translations",
    "opencv_w2c_to_opengl_c2w", "opengl_c2w_to_opencv_w2c", "pixel_grid", "plucker_rays", "random_se3",
    "relative_to_first", "rope_angles", "rope_cis", "rope_frequencies",
]
