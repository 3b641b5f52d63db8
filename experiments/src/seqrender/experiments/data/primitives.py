"""Analytic textured primitives for the procedural renderer: boxes, spheres, cylinders.

Each primitive has a centre (3,) and a rotation (3, 3) whose columns are its local axes in world
coordinates, and answers `intersect(origins, dirs)` for N rays at once (no per-pixel loops):
origins, unit dirs (N, 3) -> `Hit(distance (N,), normal (N, 3), colour (N, 3))`, where
`distance` is the ray parameter of the first hit in front of the origin (inf on a miss), `normal`
the outward world-space unit normal and `colour` the unshaded texture colour in [0, 1].
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

_TINY = 1e-12


@dataclass
class Hit:
    distance: Tensor  # (N,) inf where the ray misses
    normal: Tensor  # (N, 3) world space, unit
    colour: Tensor  # (N, 3) texture colour in [0, 1]


def _miss_to_inf(distance: Tensor, hit: Tensor) -> Tensor:
    return torch.where(hit, distance, torch.full_like(distance, math.inf))


def _cell(fraction: Tensor, cells: int) -> Tensor:
    """Index of the cell containing `fraction` in [0, 1] when [0, 1] is cut into `cells` parts."""
    return torch.floor(fraction * cells).long().clamp(0, cells - 1)


@dataclass
class Primitive(ABC):
    centre: Tensor  # (3,)
    rotation: Tensor  # (3, 3) local -> world (columns are the local axes)

    @abstractmethod
    def bounding_radius(self) -> float:
        """Radius of a sphere about `centre` that contains the primitive."""

    @abstractmethod
    def intersect(self, origins: Tensor, dirs: Tensor) -> Hit:
        """(N, 3) world rays with unit directions -> their first hits."""

    @abstractmethod
    def contains(self, points: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) bool, True inside the solid (boundary included)."""

    def to_local(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) world rays -> (N, 3) rays in the primitive's frame."""
        return (origins - self.centre) @ self.rotation, dirs @ self.rotation

    def to_world(self, normals: Tensor) -> Tensor:
        """(N, 3) local normals -> (N, 3) world normals."""
        return normals @ self.rotation.T


@dataclass
class Box(Primitive):
    """Oriented box with one colour per face, ordered +x, −x, +y, −y, +z, −z (local axes)."""

    half_extents: Tensor  # (3,)
    face_colours: Tensor  # (6, 3)

    def bounding_radius(self) -> float:
        return float(self.half_extents.norm())

    def intersect(self, origins: Tensor, dirs: Tensor) -> Hit:
        o, d = self.to_local(origins, dirs)
        d = torch.where(d.abs() < _TINY, torch.full_like(d, _TINY), d)  # slab test needs 1/d
        t1 = (-self.half_extents - o) / d
        t2 = (self.half_extents - o) / d
        t_near, axis = torch.minimum(t1, t2).max(dim=-1)
        t_far = torch.maximum(t1, t2).min(dim=-1).values
        hit = (t_near <= t_far) & (t_near > 0)
        outward = -torch.sign(torch.gather(d, 1, axis[:, None])).squeeze(1)  # faces the ray
        normal = torch.nn.functional.one_hot(axis, 3).to(o.dtype) * outward[:, None]
        face = 2 * axis + (outward < 0).long()
        return Hit(_miss_to_inf(t_near, hit), self.to_world(normal), self.face_colours[face])

    def contains(self, points: Tensor) -> Tensor:
        local = (points - self.centre) @ self.rotation
        return (local.abs() <= self.half_extents).all(dim=-1)


@dataclass
class Sphere(Primitive):
    """Sphere textured on its local longitude/latitude grid: cell (lon, lat) gets colour
    `(lon + lat) mod K`. `lon_cells = 1` gives latitude bands; 2 colours and more cells a checker."""

    radius: float
    colours: Tensor  # (K, 3)
    lon_cells: int
    lat_cells: int

    def bounding_radius(self) -> float:
        return self.radius

    def intersect(self, origins: Tensor, dirs: Tensor) -> Hit:
        oc = origins - self.centre
        b = (oc * dirs).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - self.radius**2)
        t = -b - torch.sqrt(disc.clamp_min(0.0))
        hit = (disc >= 0) & (t > 0)
        normal = (oc + t[:, None] * dirs) / self.radius
        local = normal @ self.rotation
        lat = torch.asin(local[:, 2].clamp(-1.0, 1.0)) / math.pi + 0.5
        lon = torch.atan2(local[:, 1], local[:, 0]) / (2 * math.pi) + 0.5
        index = (_cell(lon, self.lon_cells) + _cell(lat, self.lat_cells)) % self.colours.shape[0]
        return Hit(_miss_to_inf(t, hit), normal, self.colours[index])

    def contains(self, points: Tensor) -> Tensor:
        return (points - self.centre).norm(dim=-1) <= self.radius


@dataclass
class Cylinder(Primitive):
    """Capped cylinder along its local z axis; the side has `stripes` vertical stripes cycling
    through `side_colours`, the caps are `cap_colours[0]` (+z) and `cap_colours[1]` (−z)."""

    radius: float
    half_height: float
    side_colours: Tensor  # (K, 3)
    cap_colours: Tensor  # (2, 3)
    stripes: int

    def bounding_radius(self) -> float:
        return math.hypot(self.radius, self.half_height)

    def intersect(self, origins: Tensor, dirs: Tensor) -> Hit:
        o, d = self.to_local(origins, dirs)
        t_side = self._side_distance(o, d)
        dz = torch.where(d[:, 2].abs() < _TINY, torch.full_like(d[:, 2], _TINY), d[:, 2])
        t_caps = [self._cap_distance(o, d, (height - o[:, 2]) / dz)
                  for height in (self.half_height, -self.half_height)]
        distance, part = torch.stack([t_side, *t_caps], dim=-1).min(dim=-1)  # part: side/top/bottom
        point = o + distance.nan_to_num(posinf=0.0)[:, None] * d
        radial = torch.nn.functional.pad(point[:, :2] / self.radius, (0, 1))
        caps = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
        normal = torch.where((part == 0)[:, None], radial, caps[part])
        angle = torch.atan2(point[:, 1], point[:, 0]) / (2 * math.pi) + 0.5
        stripe = _cell(angle, self.stripes) % self.side_colours.shape[0]
        colours = torch.cat([self.side_colours, self.cap_colours])
        index = torch.where(part == 0, stripe, self.side_colours.shape[0] + part - 1)
        return Hit(distance, self.to_world(normal), colours[index])

    def contains(self, points: Tensor) -> Tensor:
        local = (points - self.centre) @ self.rotation
        return (local[:, :2].norm(dim=-1) <= self.radius) & (local[:, 2].abs() <= self.half_height)

    def _side_distance(self, o: Tensor, d: Tensor) -> Tensor:
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
        c = o[:, 0] ** 2 + o[:, 1] ** 2 - self.radius**2
        disc = b * b - a * c
        t = (-b - torch.sqrt(disc.clamp_min(0.0))) / a.clamp_min(_TINY)
        z = o[:, 2] + t * d[:, 2]
        return _miss_to_inf(t, (disc >= 0) & (a > _TINY) & (t > 0) & (z.abs() <= self.half_height))

    def _cap_distance(self, o: Tensor, d: Tensor, t: Tensor) -> Tensor:
        xy = o[:, :2] + t[:, None] * d[:, :2]
        return _miss_to_inf(t, (t > 0) & ((xy * xy).sum(-1) <= self.radius**2))
