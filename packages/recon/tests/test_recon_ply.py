"""The 3DGS `.ply` export against the INRIA layout, read back by an independent reader (plyfile)."""
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from seqrender.recon.ply import property_names, read_ply, write_ply
from seqrender.recon.rasterizer import Gaussians

# The INRIA 3DGS `construct_list_of_attributes` order at SH degree 3 (45 f_rest coefficients).
INRIA_ORDER = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
               + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def random_gaussians(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Gaussians(means=torch.randn(1, n, 3, generator=g), scales=0.01 + torch.rand(1, n, 3, generator=g),
                     rotations=torch.nn.functional.normalize(torch.randn(1, n, 4, generator=g), dim=-1),
                     opacities=0.02 + 0.96 * torch.rand(1, n, generator=g), colors=torch.rand(1, n, 3, generator=g))


def test_property_names_are_the_inria_layout():
    assert property_names() == INRIA_ORDER
    assert property_names(0)[-8:] == INRIA_ORDER[-8:] and "f_rest_0" not in property_names(0)


def test_plyfile_reads_the_layout_and_stored_values(tmp_path):
    g = random_gaussians()
    path = write_ply(tmp_path / "g.ply", g)
    ply = PlyData.read(str(path))
    vertex = ply["vertex"]
    assert ply.elements[0].name == "vertex" and len(ply.elements) == 1 and not ply.text
    assert [p.name for p in vertex.properties] == INRIA_ORDER
    assert all(vertex[name].dtype == np.float32 for name in INRIA_ORDER)
    assert vertex.count == 50
    stored = lambda *names: torch.from_numpy(np.stack([vertex[n] for n in names], axis=-1).astype(np.float64))
    o = g.opacities[0].double()
    torch.testing.assert_close(stored("opacity")[:, 0], torch.log(o / (1 - o)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stored("scale_0", "scale_1", "scale_2"), g.scales[0].double().log(), rtol=1e-6, atol=1e-6)
    c0 = 1 / (2 * math.sqrt(math.pi))
    torch.testing.assert_close(stored("f_dc_0", "f_dc_1", "f_dc_2"), (g.colors[0].double() - 0.5) / c0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stored("rot_0", "rot_1", "rot_2", "rot_3"), g.rotations[0].double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stored("x", "y", "z"), g.means[0].double())
    assert not stored("nx", "ny", "nz", "f_rest_0", "f_rest_44").any()


def test_round_trip(tmp_path):
    g = random_gaussians(seed=1)
    back = read_ply(write_ply(tmp_path / "g.ply", g))
    for name in ("means", "scales", "rotations", "opacities", "colors"):
        torch.testing.assert_close(getattr(back, name), getattr(g, name), rtol=1e-5, atol=1e-5)


def test_reader_rejects_other_files(tmp_path):
    (tmp_path / "a.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(ValueError, match="binary_little_endian"):
        read_ply(tmp_path / "a.ply")
    with pytest.raises(ValueError, match="batch"):
        write_ply(tmp_path / "b.ply", Gaussians(*(torch.cat([x, x]) for x in vars(random_gaussians()).values())))
