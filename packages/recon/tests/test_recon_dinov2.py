"""DINOv2 ViT: strict hub key layout and a float64 functional reference (plain and register models)."""
import math

import pytest
import torch
import torch.nn.functional as F

from seqrender.recon.dinov2 import DinoV2, DinoV2Config, normalise_images

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
def test_hub_layout_matches_reference(cfg):
    sd = hub_state_dict(cfg, torch.Generator().manual_seed(0))
    model = DinoV2(cfg).double()
    model.load_state_dict(sd, strict=True)
    images = torch.randn(2, 3, 42, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = reference_forward(sd, cfg, images)
    torch.testing.assert_close(model(images), ref, atol=1e-9, rtol=1e-9)
    patches = ref[:, 1 + cfg.num_register_tokens:]
    torch.testing.assert_close(model.patch_tokens(images), patches, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(model.patch_features(images), patches.reshape(2, 3, 2, 24), atol=1e-9, rtol=1e-9)
    with pytest.raises(ValueError, match="multiples of patch_size=14"):
        model(images[..., :20])


def test_normalise_images_imagenet_statistics():
    images = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    expected = torch.stack([(images[:, 0] - 0.485) / 0.229, (images[:, 1] - 0.456) / 0.224,
                            (images[:, 2] - 0.406) / 0.225], dim=1)
    torch.testing.assert_close(normalise_images(images), expected)
