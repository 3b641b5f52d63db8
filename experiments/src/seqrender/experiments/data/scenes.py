"""Deterministic procedural object-centric scenes and orbit cameras.

A scene is `min_primitives`..`max_primitives` primitives (boxes, spheres, cylinders) near the origin,
world z up. With `part_colours` every face/part has its own colour (hues spread evenly around the
colour wheel); without it every primitive has one colour (distinct hues per primitive), so the
colours a target view shows are the colours its references show. Cameras orbit the origin and
look at it.
"""

import colorsys
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from seqrender.experiments.data.cameras import look_at_w2c
from seqrender.experiments.data.primitives import Box, Cylinder, Primitive, Sphere
from seqrender.posenc.conventions import intrinsics_from_fov


@dataclass(frozen=True)
class SceneConfig:
    min_primitives: int = 2
    max_primitives: int = 4
    centre_radius: float = 0.5  # primitive centres lie within this distance of the world z axis
    centre_height: float = 0.25  # ... and within ±this of z = 0
    min_size: float = 0.2  # half-extent / radius range
    max_size: float = 0.45
    part_colours: bool = True  # every face/part its own colour (False: one colour per primitive)


@dataclass(frozen=True)
class OrbitConfig:
    radius: float = 3.5
    elevations_deg: tuple[float, ...] = (15.0, 35.0)  # cycled over the views
    fov_x: float = 0.6911  # radians, NeRF-synthetic's camera_angle_x
    azimuth_jitter: float = 0.25  # uniform jitter, as a fraction of the azimuth step
    radius_jitter: float = 0.0  # uniform jitter, as a fraction of the radius
    azimuth_step_deg: float | None = None  # between neighbouring views; None: 360° / views (a full orbit)


def check_view_step(view_step_deg: float | None, views: int, field: str = "views") -> None:
    """A dataset's `view_step_deg` must keep its `views` on at most one turn: (0, 360 / views]."""
    if view_step_deg is not None and not 0 < view_step_deg <= 360 / views:
        raise ValueError(f"view_step_deg must be in (0, 360/{field} = {360 / views:g}], got {view_step_deg}")


def orbit_manifest(orbit: OrbitConfig) -> dict:
    """The orbit's fields for a dataset manifest; unset optional fields (None) are left out, so the
    manifests (and caches) of datasets made before such a field existed stay valid."""
    return {k: v for k, v in asdict(orbit).items() if v is not None}


def rotation_matrix(axis_angle: Tensor) -> Tensor:
    """(3,) axis-angle vector -> (3, 3) rotation (Rodrigues' formula)."""
    angle = float(axis_angle.norm())
    if angle < 1e-12:
        return torch.eye(3)
    k = (axis_angle / angle).tolist()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(shape or (1,), generator=generator)


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _distinct_colours(n: int, generator: torch.Generator) -> Tensor:
    """(n, 3) colours with evenly spread hues (random offset, shuffled), saturated and mid-bright
    so that none is close to a white or black background."""
    offset = float(_uniform(generator, 0.0, 1.0))
    order = torch.randperm(n, generator=generator).tolist()
    sat = _uniform(generator, 0.55, 1.0, n).tolist()
    val = _uniform(generator, 0.55, 0.95, n).tolist()
    rgb = [colorsys.hsv_to_rgb((offset + order[i] / n) % 1.0, sat[i], val[i]) for i in range(n)]
    return torch.tensor(rgb, dtype=torch.float32)


def _random_pose(generator: torch.Generator, config: SceneConfig) -> tuple[Tensor, Tensor]:
    """Random centre (3,) near the origin and rotation (3, 3)."""
    angle = float(_uniform(generator, 0.0, 2 * math.pi))
    r = config.centre_radius * math.sqrt(float(_uniform(generator, 0.0, 1.0)))
    z = float(_uniform(generator, -config.centre_height, config.centre_height))
    axis = torch.nn.functional.normalize(torch.randn(3, generator=generator), dim=0)
    spin = float(_uniform(generator, 0.0, math.pi))
    centre = torch.tensor([r * math.cos(angle), r * math.sin(angle), z])
    return centre, rotation_matrix(axis * spin)


def _size(generator: torch.Generator, config: SceneConfig, *shape: int) -> Tensor:
    return _uniform(generator, config.min_size, config.max_size, *shape)


def _make_primitive(kind: int, colours: Tensor, generator: torch.Generator, config: SceneConfig) -> Primitive:
    """kind 0: box (6 colours), 1: sphere (2 or 3 colours), 2: cylinder (4 colours)."""
    centre, rotation = _random_pose(generator, config)
    if kind == 0:
        return Box(centre, rotation, half_extents=_size(generator, config, 3), face_colours=colours)
    if kind == 1:
        checker = colours.shape[0] == 2
        return Sphere(centre, rotation, radius=float(_size(generator, config)), colours=colours,
                      lon_cells=_randint(generator, 3, 4) * 2 if checker else 1,
                      lat_cells=_randint(generator, 3, 6))
    return Cylinder(centre, rotation, radius=0.8 * float(_size(generator, config)),
                    half_height=float(_size(generator, config)),
                    side_colours=colours[:2], cap_colours=colours[2:], stripes=_randint(generator, 2, 4) * 2)


def make_scene(generator: torch.Generator, config: SceneConfig = SceneConfig()) -> list[Primitive]:
    """A random scene of `min_primitives`..`max_primitives` primitives, every part its own colour."""
    count = _randint(generator, config.min_primitives, config.max_primitives)
    kinds = [_randint(generator, 0, 2) for _ in range(count)]
    colour_counts = [{0: 6, 1: _randint(generator, 2, 3), 2: 4}[k] for k in kinds]
    if config.part_colours:
        colours = _distinct_colours(sum(colour_counts), generator).split(colour_counts)
    else:
        colours = [c.expand(n, 3) for c, n in zip(_distinct_colours(count, generator), colour_counts)]
    return [_make_primitive(k, c, generator, config) for k, c in zip(kinds, colours)]


def orbit_cameras(num_views: int, *, height: int, width: int, generator: torch.Generator,
                  config: OrbitConfig = OrbitConfig()) -> tuple[Tensor, Tensor]:
    """`num_views` cameras on an orbit around the origin (world z up), looking at the origin.

    Azimuths sweep 360° evenly from a random start, or `config.azimuth_step_deg` apart (an arc),
    plus jitter; elevations cycle through `config.elevations_deg`. Returns intrinsics (V, 3, 3) and OpenCV world-to-camera (V, 4, 4).
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    step = 2 * math.pi / num_views if config.azimuth_step_deg is None else math.radians(config.azimuth_step_deg)
    start = _uniform(generator, 0.0, 2 * math.pi)
    azimuth = start + step * (torch.arange(num_views) + config.azimuth_jitter * _uniform(generator, -0.5, 0.5, num_views))
    elevations = torch.tensor(config.elevations_deg)
    elevation = torch.deg2rad(elevations[torch.arange(num_views) % len(elevations)])
    radius = config.radius * (1 + config.radius_jitter * _uniform(generator, -1.0, 1.0, num_views))
    eye = radius[:, None] * torch.stack([torch.cos(elevation) * torch.cos(azimuth),
                                         torch.cos(elevation) * torch.sin(azimuth),
                                         torch.sin(elevation)], dim=-1)
    extrinsics = look_at_w2c(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]))
    intrinsics = intrinsics_from_fov(config.fov_x, width=width, height=height).expand(num_views, 3, 3)
    return intrinsics.clone(), extrinsics
