"""Test fixtures: procedural scenes rendered by the project's renderer (so the true cameras are
known) and written in the exact on-disk layout of each real-data format. The writers go the other
way from the loaders, with independent math (roma quaternions, explicit matrices)."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch
from PIL import Image

from seqrender.experiments.data import generator_from, make_scene, orbit_cameras, render
from seqrender.experiments.data.embedded import single_thread
from seqrender.experiments.data.primitives import Primitive

FLIP_XY = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Truth:
    name: str
    primitives: list[Primitive]
    intrinsics: torch.Tensor  # (V, 3, 3) pixels of (H, W)
    extrinsics: torch.Tensor  # (V, 4, 4) OpenCV w2c, float64
    rgb: np.ndarray  # (V, H, W, 3) uint8, over white


def rendered_scenes(count: int = 3, views: int = 5, height: int = 16, width: int = 24, *, seed: int = 7,
                    principal_offset: tuple[float, float] = (0.0, 0.0), fy_scale: float = 1.0) -> list[Truth]:
    """`count` procedural scenes of `views` orbit views each; intrinsics may be off-centre/anisotropic."""
    with single_thread():
        return [_rendered_scene(s, views, height, width, seed, principal_offset, fy_scale) for s in range(count)]


def _rendered_scene(s: int, views: int, height: int, width: int, seed: int, principal_offset: tuple[float, float],
                    fy_scale: float) -> Truth:
    gen = generator_from(seed, s)
    primitives = make_scene(gen)
    k, w2c = orbit_cameras(views, height=height, width=width, generator=gen)
    k = k.clone()
    k[:, 0, 2] += principal_offset[0]
    k[:, 1, 2] += principal_offset[1]
    k[:, 1, 1] *= fy_scale
    image = render(primitives, k, w2c, height=height, width=width).composite((1.0, 1.0, 1.0))
    rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return Truth(f"scene_{s}", primitives, k.double(), w2c.double(), rgb)


def save_images(folder: Path, rgb: np.ndarray, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(rgb, names):
        Image.fromarray(image).save(folder / name)
    return [folder / n for n in names]


def c2w_of(w2c: torch.Tensor) -> np.ndarray:
    return np.linalg.inv(w2c.numpy())


def write_llff(root: Path, truths: list[Truth]) -> None:
    for t in truths:
        c2w = c2w_of(t.extrinsics)  # OpenCV columns: right, down, forward
        h, w = t.rgb.shape[1:3]
        rows = []
        for m, k in zip(c2w, t.intrinsics.numpy()):
            mat = np.stack([m[:3, 1], m[:3, 0], -m[:3, 2], m[:3, 3], [h, w, k[0, 0]]], axis=1)  # down, right, back
            rows.append(np.concatenate([mat.reshape(-1), [0.5, 10.0]]))
        save_images(root / t.name / "images", t.rgb, [f"IMG_{i:03d}.png" for i in range(len(rows))])
        np.save(root / t.name / "poses_bounds.npy", np.stack(rows))


def write_colmap_text(model: Path, images: Path, truth: Truth) -> None:
    """cameras.txt / images.txt / points3D.txt by hand; quaternions by roma (xyzw -> COLMAP's wxyz)."""
    model.mkdir(parents=True, exist_ok=True)
    h, w = truth.rgb.shape[1:3]
    cams, ims = ["# Camera list"], ["# Image list"]
    names = [f"frame_{i:02d}.png" for i in range(len(truth.rgb))]
    for i, (k, e) in enumerate(zip(truth.intrinsics.numpy(), truth.extrinsics)):
        cams.append(f"{i + 1} PINHOLE {w} {h} " + " ".join(repr(float(x)) for x in (k[0, 0], k[1, 1], k[0, 2], k[1, 2])))
        x, y, z, qw = roma.rotmat_to_unitquat(e[:3, :3]).tolist()
        tx, ty, tz = e[:3, 3].tolist()
        ims += [f"{i + 1} {qw!r} {x!r} {y!r} {z!r} {tx!r} {ty!r} {tz!r} {i + 1} {names[i]}", ""]
    (model / "cameras.txt").write_text("\n".join(cams) + "\n")
    (model / "images.txt").write_text("\n".join(ims) + "\n")
    (model / "points3D.txt").write_text("# 3D point list\n")
    save_images(images, truth.rgb, names)


def write_colmap(root: Path, truths: list[Truth], *, binary: bool) -> None:
    import pycolmap

    for t in truths:
        model = root / t.name / "sparse" / "0"
        write_colmap_text(model, root / t.name / "images", t)
        if binary:
            reconstruction = pycolmap.Reconstruction(str(model))
            for f in ("cameras.txt", "images.txt", "points3D.txt"):
                (model / f).unlink()
            reconstruction.write_binary(str(model))


def write_realestate(root: Path, truths: list[Truth]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for t in truths:
        h, w = t.rgb.shape[1:3]
        stamps = [1_000_000 + 33_366 * i for i in range(len(t.rgb))]
        lines = [f"https://www.youtube.com/watch?v={t.name}"]
        for stamp, k, e in zip(stamps, t.intrinsics.numpy(), t.extrinsics.numpy()):
            norm = [k[0, 0] / w, k[1, 1] / h, k[0, 2] / w, k[1, 2] / h]
            lines.append(" ".join(repr(float(x)) for x in [*norm, 0.0, 0.0, *e[:3].reshape(-1)]).join([f"{stamp} ", ""]))
        (root / f"{t.name}.txt").write_text("\n".join(lines) + "\n")
        save_images(root / t.name, t.rgb, [f"{s}.png" for s in stamps])


def write_co3d(root: Path, truths: list[Truth], *, category: str = "toycar") -> None:
    """Odd scenes use "ndc_norm_image_bounds", even ones "ndc_isotropic"."""
    entries = []
    for s, t in enumerate(truths):
        h, w = t.rgb.shape[1:3]
        isotropic = s % 2 == 0
        half = np.array([w / 2, h / 2])
        scale = np.full(2, half.min()) if isotropic else half
        paths = save_images(root / category / t.name / "images", t.rgb, [f"frame{i:06d}.jpg.png" for i in range(len(t.rgb))])
        for i, (k, e) in enumerate(zip(t.intrinsics.numpy(), t.extrinsics.numpy())):
            rotation = (FLIP_XY @ e[:3, :3]).T  # PyTorch3D: x_cam = x_world R + T, +x left, +y up
            focal = np.array([k[0, 0], k[1, 1]]) / scale
            principal = (half - np.array([k[0, 2], k[1, 2]])) / scale
            entries.append({"sequence_name": t.name, "frame_number": i, "frame_timestamp": i / 10,
                            "image": {"path": str(paths[i].relative_to(root)), "size": [h, w]},
                            "viewpoint": {"R": rotation.tolist(), "T": (FLIP_XY @ e[:3, 3]).tolist(),
                                          "focal_length": focal.tolist(), "principal_point": principal.tolist(),
                                          "intrinsics_format": "ndc_isotropic" if isotropic else "ndc_norm_image_bounds"}})
    with gzip.open(root / category / "frame_annotations.jgz", "wt") as f:
        json.dump(entries, f)


def write_nerfstudio(root: Path, truths: list[Truth]) -> None:
    gl = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes
    for t in truths:
        h, w = t.rgb.shape[1:3]
        k = t.intrinsics[0].numpy()
        names = [f"images/frame_{i:05d}.png" for i in range(len(t.rgb))]
        save_images(root / t.name / "images", t.rgb, [Path(n).name for n in names])
        frames = [{"file_path": n, "transform_matrix": (m @ gl).tolist()} for n, m in zip(names, c2w_of(t.extrinsics))]
        meta = {"camera_model": "OPENCV", "fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2], "cy": k[1, 2], "w": w, "h": h,
                "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}
        (root / t.name / "transforms.json").write_text(json.dumps(meta, indent=1))


def write_video(root: Path, truths: list[Truth], *, fps: int = 10) -> None:
    """The first clip as a frame folder, the others as lossless FFV1 .mkv files."""
    import av

    root.mkdir(parents=True, exist_ok=True)
    save_images(root / truths[0].name, truths[0].rgb, [f"{i:04d}.png" for i in range(len(truths[0].rgb))])
    for t in truths[1:]:
        with av.open(str(root / f"{t.name}.mkv"), "w") as container:
            stream = container.add_stream("ffv1", rate=fps)
            stream.height, stream.width, stream.pix_fmt = t.rgb.shape[1], t.rgb.shape[2], "bgr0"
            for image in t.rgb:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())


WRITERS = {"llff": write_llff, "colmap": lambda r, t: write_colmap(r, t, binary=True),
           "colmap_text": lambda r, t: write_colmap(r, t, binary=False), "realestate10k": write_realestate,
           "co3d": write_co3d, "nerfstudio": write_nerfstudio, "video": write_video}
