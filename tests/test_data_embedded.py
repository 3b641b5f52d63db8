"""The embedded dataset cache (regeneration rules) and the multi-view Dataset over it."""

import json

import pytest
import torch

from seqrender.experiments.data import embedded
from seqrender.experiments.data.dataset import MultiViewDataset
from seqrender.models import registry
from seqrender.experiments.data.embedded import (EmbeddedConfig, default_data_root, embedded_scene_dirs,
                                                 ensure_embedded_dataset)
from seqrender.experiments.data.seeding import generator_from

TINY = dict(num_scenes=3, heldout_scenes=1, views_per_scene=5, resolution=12, seed=3, supersample=1,
            progress=False)


def _images(root):
    return torch.stack([MultiViewDataset([d], views=5).get_item(0, frames=range(5))["images"]
                        for d in embedded_scene_dirs(root) + embedded_scene_dirs(root, "heldout")])


def test_generates_split_and_manifest(tmp_path):
    root = ensure_embedded_dataset(tmp_path / "d", **TINY)
    assert [d.name for d in embedded_scene_dirs(root, "train")] == ["scene_0000", "scene_0001"]
    assert [d.name for d in embedded_scene_dirs(root, "heldout")] == ["scene_0002"]
    assert json.loads((root / "manifest.json").read_text())["config"]["views_per_scene"] == 5
    meta = json.loads((root / "scene_0002" / "transforms_train.json").read_text())
    assert len(meta["frames"]) == 5 and meta["frames"][0]["file_path"] == "./train/r_0"
    with pytest.raises(ValueError, match="split must be one of"):
        embedded_scene_dirs(root, "val")


def test_killed_generation_is_redone(tmp_path, monkeypatch):
    original = embedded._generate_scene

    def dies_on_second_scene(scene_dir, config, *, index):
        if index == 1:
            raise KeyboardInterrupt  # as if the process were killed here
        original(scene_dir, config, index=index)

    monkeypatch.setattr(embedded, "_generate_scene", dies_on_second_scene)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_dataset(tmp_path / "d", **TINY)
    assert not (tmp_path / "d").exists() and (tmp_path / ".d.partial" / "scene_0000").is_dir()
    monkeypatch.setattr(embedded, "_generate_scene", original)
    root = ensure_embedded_dataset(tmp_path / "d", **TINY)
    assert not (tmp_path / ".d.partial").exists()
    fresh = ensure_embedded_dataset(tmp_path / "fresh", **TINY)
    torch.testing.assert_close(_images(root), _images(fresh))  # complete and deterministic


def test_reuses_matching_cache_and_regenerates_otherwise(tmp_path, monkeypatch):
    root = ensure_embedded_dataset(tmp_path / "d", **TINY)
    before = _images(root)

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated a complete, matching dataset")

    monkeypatch.setattr(embedded, "_generate", must_not_run)
    assert ensure_embedded_dataset(tmp_path / "d", **TINY) == root
    monkeypatch.undo()
    root = ensure_embedded_dataset(tmp_path / "d", **{**TINY, "seed": 4})  # other parameters
    assert json.loads((root / "manifest.json").read_text())["config"]["seed"] == 4
    assert not torch.equal(_images(root), before)
    (root / "manifest.json").unlink()  # incomplete (marker without manifest): regenerated
    ensure_embedded_dataset(tmp_path / "d", **TINY)
    torch.testing.assert_close(_images(root), before)


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        ensure_embedded_dataset(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_config_validation_and_default_root(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="heldout_scenes"):
        EmbeddedConfig(num_scenes=4, heldout_scenes=4)
    with pytest.raises(ValueError, match="resolution"):
        EmbeddedConfig(resolution=0)
    monkeypatch.setenv("SEQRENDER_DATA", str(tmp_path))
    assert default_data_root() == tmp_path


def test_dataset_items(tmp_path):
    config = EmbeddedConfig(root=str(tmp_path / "d"), **{k: v for k, v in TINY.items() if k != "progress"})
    ds = registry.build("dataset", "embedded", config, split="train", views=3, seed=7, progress=False)
    assert len(ds) == 2
    item = ds[1]
    assert item["images"].shape == (3, 3, 12, 12) and item["images"].dtype == torch.float32
    assert 0.0 <= float(item["images"].min()) and float(item["images"].max()) <= 1.0
    assert item["intrinsics"].shape == (3, 3, 3) and item["extrinsics"].shape == (3, 4, 4)
    assert item["scene"] == "scene_0001" and item["index"] == 1
    assert len(set(item["frames"].tolist())) == 3 and all(0 <= f < 5 for f in item["frames"].tolist())
    R = item["extrinsics"][:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    # every camera looks at the origin (the scene centre) from the orbit radius
    torch.testing.assert_close(item["extrinsics"][:, :2, 3], torch.zeros(3, 2), atol=1e-5, rtol=0)
    # deterministic in (seed, index); a caller-supplied generator changes the draw
    torch.testing.assert_close(ds[1]["images"], item["images"])
    draws = {tuple(ds.get_item(1, generator=generator_from(7, step, 0))["frames"].tolist()) for step in range(8)}
    assert len(draws) > 1
    chosen = ds.get_item(0, frames=[4, 0])
    assert chosen["frames"].tolist() == [4, 0]
    full = ds.get_item(0, frames=range(5))
    torch.testing.assert_close(chosen["images"], full["images"][[4, 0]])
    with pytest.raises(IndexError):
        ds.get_item(2)
    with pytest.raises(ValueError, match="fewer than views=6"):
        MultiViewDataset(embedded_scene_dirs(tmp_path / "d"), views=6)


@pytest.mark.parametrize("step", [None, 10.0])
def test_view_step_deg_puts_the_views_on_an_arc(tmp_path, step):
    """Camera centres read back from the written transforms (camera-to-world, Blender axes):
    neighbouring views are `step` degrees apart in azimuth (360/V unset), within the ±12.5 % jitter;
    unset, the field stays out of the manifest, so caches made before it stay valid."""
    import math

    root = ensure_embedded_dataset(tmp_path / "d", **TINY, view_step_deg=step)
    frames = json.loads((root / "scene_0002" / "transforms_train.json").read_text())["frames"]
    centres = torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float64)[:, :3, 3]
    azimuth = torch.atan2(centres[:, 1], centres[:, 0])
    gaps = torch.rad2deg(torch.remainder(azimuth.diff(), 2 * math.pi))
    expected = 360 / 5 if step is None else step
    assert ((gaps - expected).abs() <= 0.25 * expected + 1e-6).all(), gaps
    manifest = json.loads((root / "manifest.json").read_text())
    assert ("view_step_deg" in manifest["config"]) == (step is not None)
    with pytest.raises(ValueError, match="view_step_deg"):
        EmbeddedConfig(views_per_scene=4, view_step_deg=100.0)
