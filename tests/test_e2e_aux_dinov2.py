"""Kaleido's DINOv2 auxiliary features through the CLI (issue 10, item 4): training and evaluation
pass the images, and `model.aux_encoder=... model.aux_checkpoint=...` loads a local hub-layout file."""
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run, run_metrics  # noqa: E402

from seqrender.models.dinov2 import load_dinov2  # noqa: E402


def random_hub_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Random ViT-S/14 weights under the torch-hub key names (no mask_token, as hub files may omit it)."""
    gen = torch.Generator().manual_seed(0)
    state = {k: 0.02 * torch.randn(v.shape, generator=gen)
             for k, v in load_dinov2("dinov2_vits14").state_dict().items() if k != "mask_token"}
    torch.save(state, path)
    return state


def test_aux_dinov2_trains_and_evaluates_from_a_local_checkpoint(tmp_path):
    state = random_hub_checkpoint(tmp_path / "dinov2_vits14_pretrain.pth")
    run_dir = tmp_path / "run"
    _, metrics = run_metrics(*TINY, "trainer.steps=2", "trainer.checkpoint_every=2", "model.aux_encoder=dinov2_vits14",
                             f"model.aux_checkpoint={tmp_path / 'dinov2_vits14_pretrain.pth'}",
                             run_dir=run_dir, data_root=tmp_path / "data")
    for methods in metrics["eval"].values():
        assert all(math.isfinite(s["psnr"]) for s in methods.values())
    weights = load_file(Path(metrics["train"]["checkpoint"]) / "ema.safetensors")
    for key in ("patch_embed.proj.weight", "blocks.11.mlp.fc2.bias", "norm.weight"):
        torch.testing.assert_close(weights[f"aux_encoder.{key}"], state[key], rtol=0, atol=0)  # frozen, from the file
    assert "aux_proj.weight" in weights


def test_missing_aux_checkpoint_is_one_line(tmp_path):
    missing = tmp_path / "nowhere.pth"
    result = run(*TINY, "trainer.steps=1", "model.aux_encoder=dinov2_vits14", f"model.aux_checkpoint={missing}",
                 f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path / "data")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("config error: model") and str(missing) in lines[0], lines
