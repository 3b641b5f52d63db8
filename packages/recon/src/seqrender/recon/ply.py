"""3D Gaussian splats as the INRIA 3DGS `.ply` (what its viewer, SuperSplat, gsplat and most 3DGS
tools open): binary little-endian, one `vertex` element of float32 properties in this order

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 … f_rest_{3((d+1)²−1)−1}  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

stored before activation: f_dc = (rgb − ½) / C₀ (degree-0 spherical harmonic, C₀ = 1/(2√π)),
higher-degree coefficients f_rest zero (degree d = 3 by default, INRIA's), opacity = logit(α),
scale = log(σ), rot = quaternion (w, x, y, z); normals zero.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqrender.recon.rasterizer import Gaussians

SH_C0 = 0.5 / math.sqrt(math.pi)
EPS = 1e-6


def property_names(sh_degree: int = 3) -> list[str]:
    """The vertex properties in file order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def to_rows(g: Gaussians, sh_degree: int = 3) -> np.ndarray:
    """Gaussians with batch 1 -> (N, properties) float32, activations inverted."""
    if g.means.shape[0] != 1:
        raise ValueError(f"write one batch element at a time, got batch {g.means.shape[0]}")
    means, scales, rot, opac, colors = (x[0].detach().double().cpu() for x in
                                        (g.means, g.scales, g.rotations, g.opacities, g.colors))
    n = len(means)
    rest = torch.zeros(n, 3 * ((sh_degree + 1) ** 2 - 1), dtype=torch.float64)
    opac = opac.clamp(EPS, 1 - EPS)
    columns = [means, torch.zeros(n, 3, dtype=torch.float64), (colors - 0.5) / SH_C0, rest,
               (opac.log() - (-opac).log1p())[:, None], scales.clamp_min(1e-12).log(),
               torch.nn.functional.normalize(rot, dim=-1)]
    return torch.cat(columns, dim=1).float().numpy()


def write_ply(path: str | os.PathLike, gaussians: Gaussians, *, sh_degree: int = 3) -> Path:
    """Write Gaussians (batch 1) as a 3DGS `.ply`; returns the path."""
    names = property_names(sh_degree)
    rows = to_rows(gaussians, sh_degree)
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {len(rows)}",
                        *[f"property float {n}" for n in names], "end_header"]) + "\n"
    path = Path(path)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rows.astype("<f4").tobytes())
    return path


def read_header(data: bytes) -> tuple[int, list[str], int]:
    """-> (vertex count, property names, byte offset of the body); ValueError when not a binary
    little-endian ply of float vertex properties."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError("not a ply file (no 'ply' magic or 'end_header')")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError("only binary_little_endian 1.0 ply files are read")
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    names = []
    for line in lines:
        if line.startswith("property"):
            kind, name = line.split()[1:]
            if kind != "float":
                raise ValueError(f"property {name}: only float properties are read, got {kind}")
            names.append(name)
    return count, names, end + len(b"end_header\n")


def read_ply(path: str | os.PathLike) -> Gaussians:
    """A 3DGS `.ply` -> Gaussians with batch 1 (activations applied; f_rest ignored)."""
    data = Path(path).read_bytes()
    count, names, offset = read_header(data)
    rows = np.frombuffer(data, dtype="<f4", count=count * len(names), offset=offset).reshape(count, len(names))
    col = lambda *keys: torch.from_numpy(rows[:, [names.index(k) for k in keys]].copy())
    return Gaussians(means=col("x", "y", "z")[None], scales=col("scale_0", "scale_1", "scale_2").exp()[None],
                     rotations=torch.nn.functional.normalize(col("rot_0", "rot_1", "rot_2", "rot_3"), dim=-1)[None],
                     opacities=torch.sigmoid(col("opacity")[:, 0])[None],
                     colors=(0.5 + SH_C0 * col("f_dc_0", "f_dc_1", "f_dc_2"))[None])
