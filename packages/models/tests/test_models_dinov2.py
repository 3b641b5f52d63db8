"""DINOv2 loader: local .pth / .safetensors files in the hub layout, names, errors; Kaleido's use of it
(the ViT's numerics are tested against a float64 reference in packages/recon/tests/test_recon_dinov2.py)."""
import pytest
import torch
from safetensors.torch import save_file

from seqrender.models import Kaleido, KaleidoConfig
from seqrender.models.dinov2 import DINOV2_SIZES, DinoV2Config, load_dinov2

TINY = DinoV2Config(embed_dim=24, depth=2, num_heads=2, patch_size=14, img_size=28)
TINY_REG = DinoV2Config(embed_dim=24, depth=2, num_heads=2, patch_size=14, img_size=28, num_register_tokens=3,
                        interpolate_offset=0.0, interpolate_antialias=True)


def file_state_dict(cfg, gen):
    """Random tensors for every parameter of `cfg`'s model except `mask_token` (hub files may omit it)."""
    shapes = {k: v.shape for k, v in load_dinov2(cfg).state_dict().items() if k != "mask_token"}
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


@pytest.mark.parametrize("cfg", [TINY, TINY_REG], ids=["plain", "registers"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_local_file(tmp_path, cfg, suffix):
    sd = file_state_dict(cfg, torch.Generator().manual_seed(0))
    path = tmp_path / f"dinov2{suffix}"
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    own = load_dinov2(cfg, path).state_dict()
    assert set(own) == set(sd) | {"mask_token"}
    for k, v in sd.items():
        torch.testing.assert_close(own[k], v, rtol=0, atol=0)


def test_sizes_follow_the_hub():
    vitl = DINOV2_SIZES["dinov2_vitl14_reg"]
    assert (vitl.embed_dim, vitl.depth, vitl.num_heads, vitl.num_register_tokens) == (1024, 24, 16, 4)
    assert DINOV2_SIZES["dinov2_vits14"].num_register_tokens == 0


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_dinov2(TINY, tmp_path / "missing.pth")
    sd = file_state_dict(TINY, torch.Generator().manual_seed(0))
    sd["blocks.9.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="unexpected \\['blocks.9.extra'\\]"):
        load_dinov2(TINY, tmp_path / "bad.pth")
    del sd["blocks.9.extra"]
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(7, 24)  # wrong shape: one ValueError with both shapes
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1\.weight: file \(7, 24\) vs model \(96, 24\)"):
        load_dinov2(TINY, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="DINOv2 name must be one of"):
        load_dinov2("dinov2_huge")


def test_kaleido_reads_aux_features_of_kept_references_only():
    torch.manual_seed(0)
    cfg = KaleidoConfig(layers=1, hidden=32, heads=2, kv_heads=1, in_channels=4, aux_encoder="dinov2_vits14")
    model = Kaleido(cfg, posenc="rope")
    torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    for p in model.blocks[0].modulation.parameters():
        torch.nn.init.normal_(p, std=0.1)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(1, 3, 4, 4, 4, generator=gen)
    images = torch.rand(1, 3, 3, 20, 20, generator=gen)
    is_reference = torch.tensor([[True, False, False]])
    run = lambda imgs, **kw: model(z, torch.tensor([0.5]), is_reference=is_reference, images=imgs, **kw)  # noqa: E731
    with torch.no_grad():
        base = run(images)
        target_changed = images.clone()
        target_changed[:, 1:] = torch.rand(1, 2, 3, 20, 20, generator=gen)
        torch.testing.assert_close(run(target_changed), base, atol=0, rtol=0)
        ref_changed = images.clone()
        ref_changed[:, 0] = torch.rand(3, 20, 20, generator=gen)
        assert (run(ref_changed) - base).abs().max() > 1e-4
        drop = torch.tensor([True])
        torch.testing.assert_close(run(ref_changed, drop_condition=drop), run(images, drop_condition=drop))
    assert not any(p.requires_grad for p in model.aux_encoder.parameters())
    with pytest.raises(ValueError, match="images .* are required"):
        model(z, torch.tensor([0.5]), is_reference=is_reference)
