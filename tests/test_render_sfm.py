"""Structure-from-motion on photos of an embedded scene (rendered on a floor with a solid texture so
SIFT finds features): the recovered cameras match the true ones after a similarity (Umeyama) alignment."""
import numpy as np
import pytest
import torch

from seqrender.experiments.render import RenderError
from seqrender.experiments.render.photos import HELDOUT_SCENE, textured_views, write_photos
from seqrender.experiments.render.sfm import reconstruct

pytest.importorskip("pycolmap")


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising Σ‖s·R·src_i + t − dst_i‖² (Umeyama 1991). src, dst (N, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / (a * a).sum(1).mean()
    return scale, rot, mu_d - scale * rot @ mu_s


def centres(w2c: np.ndarray) -> np.ndarray:
    return -np.einsum("vji,vj->vi", w2c[:, :3, :3], w2c[:, :3, 3])


def test_sfm_recovers_the_cameras_of_a_textured_embedded_scene(tmp_path):
    views = 24
    images, intrinsics, extrinsics = textured_views(HELDOUT_SCENE, views=views, size=160)
    files = write_photos(tmp_path / "photos", images)
    cams = reconstruct(files, workdir=tmp_path / "sfm")
    assert len(cams.names) == views
    order = [int(n[6:8]) for n in cams.names]
    truth = extrinsics[order].double().numpy()
    estimate = cams.extrinsics.double().numpy()
    scale, rot, shift = umeyama(centres(estimate), centres(truth))
    aligned = scale * centres(estimate) @ rot.T + shift
    scene_scale = np.linalg.norm(centres(truth) - centres(truth).mean(0), axis=1).max()
    centre_error = np.linalg.norm(aligned - centres(truth), axis=1).max() / scene_scale
    # world-to-camera rotations: R_true ≈ R_est · rotᵀ
    relative = np.einsum("vij,vkj->vik", truth[:, :3, :3], estimate[:, :3, :3] @ rot.T)
    angles = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    print(f"SfM: max rotation error {angles.max():.3f} deg, max centre error {100 * centre_error:.3f} % "
          f"of the scene scale, focal {float(cams.intrinsics[0, 0, 0]):.1f} px (true {float(intrinsics[0, 0, 0]):.1f})")
    assert angles.max() < 2.0
    assert centre_error < 0.02


def test_sfm_failure_is_one_line(tmp_path):
    blank = torch.ones(3, 3, 64, 64)
    files = write_photos(tmp_path / "blank", blank)
    with pytest.raises(RenderError, match="structure-from-motion") as err:
        reconstruct(files, workdir=tmp_path / "sfm")
    assert "\n" not in str(err.value)


def test_texture_scales_the_surface_colour_only():
    from seqrender.experiments.data import generator_from, make_scene, orbit_cameras, render
    from seqrender.experiments.data.texture import SolidTexture

    prims = make_scene(generator_from(0, 1))
    k, e = orbit_cameras(2, height=24, width=24, generator=generator_from(0, 2))
    plain = render(prims, k, e, height=24, width=24)
    half = render(prims, k, e, height=24, width=24, texture=lambda p: torch.full(p.shape[:1], 0.5))
    assert torch.allclose(half.rgb, plain.rgb * 0.5, atol=1e-6) and torch.equal(half.alpha, plain.alpha)
    factors = SolidTexture(contrast=0.7)(torch.rand(1000, 3) * 3 - 1.5)
    assert factors.min() >= 0.3 - 1e-6 and factors.max() <= 1.0 and factors.std() > 0.1
