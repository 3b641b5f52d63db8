"""A precomputed, resumable cache of training latents (`vae.cache=<folder>`, issue 12 §5).

Every kept frame of every training scene is encoded once by the frozen VAE (posterior mean) and
stored per scene as `<folder>/scene_<i>.safetensors` (latents (N, C, h, w)), written atomically,
with a progress bar. `manifest.json` records what the latents depend on (VAE folder and config,
dataset config, resolution, scene count); a folder made for something else is refused in one line.
A killed encoding resumes: scenes whose file is there are kept. Training then reads a sample's
latents by (scene, frames) instead of encoding its pixels: the batch equals the on-the-fly one
(`latent.encode_batch`) up to float rounding of the encoder.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from seqrender.experiments.batching import SceneTensors
from seqrender.experiments.checkpoint import atomic_write
from seqrender.experiments.failures import UserError
from seqrender.models.vae import AutoencoderKL

MANIFEST = "manifest.json"


def scene_frames(data, scene: int) -> Tensor:
    """Every kept frame of training scene `scene`, (N, 3, H, W) in [0, 1]: in memory or from disk."""
    if isinstance(data, SceneTensors):
        return data.images[scene]
    return data.get_item(scene, frames=range(len(data.cameras[scene])))["images"]


class LatentCache:
    """Latents of the training scenes, encoded once (see the module doc)."""

    def __init__(self, folder: Path, data, vae: AutoencoderKL, key: dict, *, progress: bool = True):
        self.folder, self.data, self.vae = Path(folder), data, vae
        self._loaded: dict[int, Tensor] = {}
        self._check_manifest(key)
        missing = [s for s in range(len(data)) if not self.path(s).is_file()]
        for scene in tqdm(missing, desc="encoding latents", unit="scene", disable=not progress or not missing):
            self._encode(scene)

    def path(self, scene: int) -> Path:
        return self.folder / f"scene_{scene:06d}.safetensors"

    def latents(self, scene: Tensor, frames: Tensor) -> Tensor:
        """scene (B,), frames (B, V) -> latents (B, V, C, h, w)."""
        return torch.stack([self._scene(int(s))[f] for s, f in zip(scene, frames)])

    def _scene(self, scene: int) -> Tensor:
        if scene not in self._loaded:
            self._loaded[scene] = load_file(str(self.path(scene)))["latents"]
        return self._loaded[scene]

    @torch.no_grad()
    def _encode(self, scene: int) -> None:
        device = next(self.vae.parameters()).device
        latents = self.vae.encode(scene_frames(self.data, scene).to(device) * 2 - 1).cpu().contiguous()
        atomic_write(self.path(scene), lambda tmp: save_file({"latents": latents}, str(tmp)))

    def _check_manifest(self, key: dict) -> None:
        path = self.folder / MANIFEST
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored != key:
                field = next(k for k in sorted(set(key) | set(stored)) if key.get(k) != stored.get(k))
                raise UserError(f"vae.cache: {self.folder} holds latents of another setup ({field} differs); "
                                f"give another folder or delete it")
            return
        text = json.dumps(key, indent=1, sort_keys=True)
        atomic_write(path, lambda tmp: tmp.write_text(text))


def cache_key(cfg, data) -> dict:
    """What the cached latents depend on: the VAE, the dataset (its config and scene count)."""
    vae_config = Path(cfg.vae.path) / "config.json"
    return {"vae_path": str(Path(cfg.vae.path).resolve()),
            "vae_config": json.loads(vae_config.read_text()) if vae_config.is_file() else None,
            "dataset": cfg.dataset.name, "dataset_config": json.loads(json.dumps(
                dataclasses.asdict(cfg.dataset.config), default=str)), "scenes": len(data)}
