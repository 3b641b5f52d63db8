"""The AutoencoderKL loader against diffusers.AutoencoderKL itself (issue 10, item 5): random
weights, `save_pretrained` to a local folder, then our loader; encode and decode must agree.
diffusers is a test dependency (requirements-test.txt and this package's `test` extra)."""

import json

import pytest
import torch

from seqrender.models.vae import AutoencoderKL, VAEConfig

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency: pip install diffusers")

SMALL = dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
             down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
STYLES = {
    # SD 1.x/2.x: 4 channels, quant convs, shift_factor null (saved as null); an old config.json
    # without use_quant_conv / use_post_quant_conv must mean True, as in diffusers
    "sd": (dict(latent_channels=4, scaling_factor=0.18215), ("use_quant_conv", "use_post_quant_conv")),
    # FLUX.1: 16 channels, no quant convs, scaling 0.3611, shift 0.1159
    "flux": (dict(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159,
                  use_quant_conv=False, use_post_quant_conv=False), ()),
}


def save_random_diffusers_vae(path, style):
    """A diffusers AutoencoderKL with random weights saved to `path`; returns it (float32, eval)."""
    options, drop = STYLES[style]
    torch.manual_seed(0)
    model = diffusers.AutoencoderKL(**SMALL, **options).eval()
    with torch.no_grad():
        for p in model.parameters():  # move off the init so every tensor matters
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(path, safe_serialization=True)
    config_path = path / "config.json"
    config = json.loads(config_path.read_text())
    for key in drop:
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    return model


@pytest.mark.parametrize("style", sorted(STYLES))
def test_loader_matches_diffusers(tmp_path, style):
    reference = save_random_diffusers_vae(tmp_path, style)
    ours = AutoencoderKL.from_pretrained_local(tmp_path).eval()
    shift = reference.config.shift_factor or 0.0
    scale = reference.config.scaling_factor
    assert ours.config.shift_factor == shift and ours.config.scaling_factor == scale
    images = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        want_mean = reference.encode(images).latent_dist.mean
        latents = ours.encode(images)
        torch.testing.assert_close(latents, (want_mean - shift) * scale, rtol=1e-4, atol=1e-5)
        want_images = reference.decode(latents / scale + shift).sample
        torch.testing.assert_close(ours.decode(latents), want_images, rtol=1e-4, atol=1e-5)


def test_config_defaults_follow_diffusers():
    """Missing keys mean diffusers' __init__ defaults; a null shift_factor means 0."""
    defaults = diffusers.AutoencoderKL().config
    ours = VAEConfig.from_diffusers({"shift_factor": None})
    for key in ("in_channels", "out_channels", "latent_channels", "layers_per_block", "norm_num_groups",
                "use_quant_conv", "use_post_quant_conv", "scaling_factor", "mid_block_add_attention"):
        assert getattr(ours, key) == defaults[key], key
    assert ours.block_out_channels == tuple(defaults["block_out_channels"])
    assert ours.shift_factor == 0.0
    with pytest.raises(ValueError, match="latent_channels must not be null"):
        VAEConfig.from_diffusers({"latent_channels": None})
