"""DINOv2: hub key layout, local loading (.pth / .safetensors) and a float64 functional reference."""
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from seqrender.models import Kaleido, KaleidoConfig
from seqrender.models.dinov2 import DinoV2Config, load_dinov2

TINY = DinoV2Config(embed_dim=24, depth=2, num_heads=2, patch_size=14, img_size=28)
TINY_REG = DinoV2Config(embed_dim=24, depth=2, num_heads=2, patch_size=14, img_size=28, num_register_tokens=3,
                        interpolate_offset=0.0, interpolate_antialias=True)


def hub_state_dict(cfg, gen):
    """Random tensors under the key names and shapes of facebookresearch/dinov2's hub checkpoints."""
    d, p, hidden = cfg.embed_dim, cfg.patch_size, int(cfg.embed_dim * cfg.mlp_ratio)
    grid = cfg.img_size // p
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + grid * grid, d), "mask_token": (1, d),
              "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,),
              "norm.weight": (d,), "norm.bias": (d,)}
    if cfg.num_register_tokens:
        shapes["register_tokens"] = (1, cfg.num_register_tokens, d)
    for i in range(cfg.depth):
        for name, shape in {"norm1.weight": (d,), "norm1.bias": (d,), "attn.qkv.weight": (3 * d, d),
                            "attn.qkv.bias": (3 * d,), "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
                            "ls1.gamma": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
                            "mlp.fc1.weight": (hidden, d), "mlp.fc1.bias": (hidden,),
                            "mlp.fc2.weight": (d, hidden), "mlp.fc2.bias": (d,), "ls2.gamma": (d,)}.items():
            shapes[f"blocks.{i}.{name}"] = shape
    return {k: 0.2 * torch.randn(s, generator=gen) for k, s in shapes.items()}


def reference_forward(sd, cfg, images):
    """Float64 ViT forward written from the checkpoint tensors alone."""
    sd = {k: v.double() for k, v in sd.items()}
    x = images.double()
    p, d, heads = cfg.patch_size, cfg.embed_dim, cfg.num_heads
    rows, cols = x.shape[-2] // p, x.shape[-1] // p
    patches = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (B, N, 3·p·p), row-major patches
    tok = patches @ sd["patch_embed.proj.weight"].reshape(d, -1).T + sd["patch_embed.proj.bias"]
    side = int(math.isqrt(sd["pos_embed"].shape[1] - 1))
    grid = sd["pos_embed"][0, 1:].reshape(side, side, d).permute(2, 0, 1)[None]
    if cfg.interpolate_offset:
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic")
    else:
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=cfg.interpolate_antialias)
    pos = torch.cat([sd["pos_embed"][0, :1], grid[0].permute(1, 2, 0).reshape(-1, d)])
    cls = sd["cls_token"].expand(x.shape[0], 1, d)
    h = torch.cat([cls, tok], dim=1) + pos
    if cfg.num_register_tokens:
        h = torch.cat([h[:, :1], sd["register_tokens"].expand(x.shape[0], -1, -1), h[:, 1:]], dim=1)

    def ln(v, prefix):
        mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-6) * sd[prefix + ".weight"] + sd[prefix + ".bias"]

    for i in range(cfg.depth):
        b = f"blocks.{i}."
        qkv = ln(h, b + "norm1") @ sd[b + "attn.qkv.weight"].T + sd[b + "attn.qkv.bias"]
        q, k, v = qkv.split(d, dim=-1)
        split = lambda t: t.reshape(*t.shape[:2], heads, d // heads).transpose(1, 2)  # noqa: E731
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        o = (att @ split(v)).transpose(1, 2).reshape(h.shape)
        h = h + sd[b + "ls1.gamma"] * (o @ sd[b + "attn.proj.weight"].T + sd[b + "attn.proj.bias"])
        m = ln(h, b + "norm2") @ sd[b + "mlp.fc1.weight"].T + sd[b + "mlp.fc1.bias"]
        m = 0.5 * m * (1 + torch.erf(m / math.sqrt(2)))
        h = h + sd[b + "ls2.gamma"] * (m @ sd[b + "mlp.fc2.weight"].T + sd[b + "mlp.fc2.bias"])
    return ln(h, "norm")


@pytest.mark.parametrize("cfg", [TINY, TINY_REG], ids=["plain", "registers"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_hub_layout_and_matches_reference(tmp_path, cfg, suffix):
    sd = hub_state_dict(cfg, torch.Generator().manual_seed(0))
    path = tmp_path / f"dinov2{suffix}"
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    model = load_dinov2(cfg, path).double()
    assert set(model.state_dict()) == set(sd)
    images = torch.randn(2, 3, 42, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(model(images), reference_forward(sd, cfg, images), atol=1e-9, rtol=1e-9)
    feats = model.patch_features(images)
    assert feats.shape == (2, 3, 2, 24)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_dinov2(TINY, tmp_path / "missing.pth")
    sd = hub_state_dict(TINY, torch.Generator().manual_seed(0))
    sd["blocks.9.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="unexpected \\['blocks.9.extra'\\]"):
        load_dinov2(TINY, tmp_path / "bad.pth")
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
