"""AutoencoderKL: diffusers key layout, strict local loading, shapes, and blocks vs functional ops."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from seqrender.models.vae import AutoencoderKL, VAEConfig

TINY = VAEConfig(latent_channels=4, block_out_channels=(4, 8, 8, 8), norm_num_groups=2, layers_per_block=1,
                 scaling_factor=0.5, shift_factor=0.1)


def diffusers_keys(chans, layers, *, attention=True, quant=False, post_quant=False) -> set[str]:
    """The state-dict keys of diffusers' AutoencoderKL, enumerated from its documented layout."""
    def conv(p):
        return {f"{p}.weight", f"{p}.bias"}

    def resnet(p, cin, cout):
        keys = set().union(*(conv(f"{p}.{n}") for n in ("norm1", "conv1", "norm2", "conv2")))
        return keys | (conv(f"{p}.conv_shortcut") if cin != cout else set())

    def mid(p, c):
        keys = resnet(f"{p}.resnets.0", c, c) | resnet(f"{p}.resnets.1", c, c)
        if attention:
            keys |= set().union(*(conv(f"{p}.attentions.0.{n}") for n in ("group_norm", "to_q", "to_k", "to_v", "to_out.0")))
        return keys

    keys = conv("encoder.conv_in") | conv("encoder.conv_norm_out") | conv("encoder.conv_out")
    keys |= conv("decoder.conv_in") | conv("decoder.conv_norm_out") | conv("decoder.conv_out")
    cin = chans[0]
    for i, c in enumerate(chans):
        for j in range(layers):
            keys |= resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(chans) - 1:
            keys |= conv(f"encoder.down_blocks.{i}.downsamplers.0.conv")
        cin = c
    keys |= mid("encoder.mid_block", chans[-1]) | mid("decoder.mid_block", chans[-1])
    rev = chans[::-1]
    cin = rev[0]
    for i, c in enumerate(rev):
        for j in range(layers + 1):
            keys |= resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(rev) - 1:
            keys |= conv(f"decoder.up_blocks.{i}.upsamplers.0.conv")
        cin = c
    return keys | (conv("quant_conv") if quant else set()) | (conv("post_quant_conv") if post_quant else set())


@pytest.mark.parametrize("quant", [False, True])
def test_state_dict_keys_match_diffusers_layout(quant):
    cfg = VAEConfig(latent_channels=4, block_out_channels=(4, 8, 8, 8), norm_num_groups=2, layers_per_block=2,
                    use_quant_conv=quant, use_post_quant_conv=quant)
    assert set(AutoencoderKL(cfg).state_dict()) == diffusers_keys((4, 8, 8, 8), 2, quant=quant, post_quant=quant)


def test_flux_sized_default_has_the_published_parameter_count():
    with torch.device("meta"):
        model = AutoencoderKL()
    # SD 1.x/2.x VAE (4 latent channels, quant convs): 83,653,863 parameters; 16 latent channels add
    # (32 − 8)·512·9 + 24 to encoder.conv_out and (16 − 4)·512·9 to decoder.conv_in, and dropping
    # quant_conv (72) / post_quant_conv (20) removes 92: 83,819,683 (FLUX.1 / SD3 VAE, "83.8M")
    assert sum(p.numel() for p in model.parameters()) == 83_653_863 + 110_616 + 55_296 - 92


def _random_checkpoint(tmp_path, cfg: VAEConfig, *, seed=0, deprecated_names=False):
    """A random state dict under diffusers names, saved like a hub folder (weights + config.json)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in AutoencoderKL(cfg).state_dict().items()}
    state = {k: torch.randn(s, generator=g) * 0.2 for k, s in shapes.items()}
    saved = dict(state)
    if deprecated_names:
        old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        for new, name in old.items():
            for part in ("weight", "bias"):
                for side in ("encoder", "decoder"):
                    key = f"{side}.mid_block.attentions.0.{new}.{part}"
                    saved[f"{side}.mid_block.attentions.0.{name}.{part}"] = saved.pop(key)
    save_file(saved, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    config = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0", "act_fn": "silu",
              "block_out_channels": list(cfg.block_out_channels), "down_block_types": ["DownEncoderBlock2D"] * 4,
              "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3,
              "latent_channels": cfg.latent_channels, "layers_per_block": cfg.layers_per_block,
              "norm_num_groups": cfg.norm_num_groups, "sample_size": 1024, "scaling_factor": cfg.scaling_factor,
              "shift_factor": cfg.shift_factor, "use_quant_conv": cfg.use_quant_conv,
              "use_post_quant_conv": cfg.use_post_quant_conv, "mid_block_add_attention": True,
              "force_upcast": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return state


@pytest.mark.parametrize("deprecated_names", [False, True])
def test_loads_local_checkpoint_strictly(tmp_path, deprecated_names):
    state = _random_checkpoint(tmp_path, TINY, deprecated_names=deprecated_names)
    model = AutoencoderKL.from_pretrained_local(tmp_path)
    assert model.config == TINY
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    direct = AutoencoderKL.from_pretrained_local(tmp_path / "diffusion_pytorch_model.safetensors", TINY)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(direct.encode(x), model.encode(x))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        AutoencoderKL.from_pretrained_local(tmp_path)
    state = _random_checkpoint(tmp_path, TINY)
    (tmp_path / "sub").mkdir()
    save_file(state, str(tmp_path / "sub" / "weights.safetensors"))  # no config.json beside it
    with pytest.raises(FileNotFoundError, match="config.json; pass config="):
        AutoencoderKL.from_pretrained_local(tmp_path / "sub" / "weights.safetensors")
    partial = {k: v for k, v in state.items() if k != "decoder.conv_out.bias"}
    partial["decoder.extra.weight"] = torch.zeros(1)
    save_file(partial, str(tmp_path / "sub" / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['decoder.conv_out.bias'\].*unexpected \['decoder.extra.weight'\]"):
        AutoencoderKL.from_pretrained_local(tmp_path / "sub" / "partial.safetensors", TINY)
    wider = VAEConfig(**{**TINY.__dict__, "latent_channels": 8})
    with pytest.raises(ValueError, match="shape mismatches"):
        AutoencoderKL.from_pretrained_local(tmp_path / "diffusion_pytorch_model.safetensors", wider)
    (tmp_path / "sub" / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read safetensors"):
        AutoencoderKL.from_pretrained_local(tmp_path / "sub" / "bad.safetensors", TINY)


def test_encode_decode_shapes_and_scaling():
    torch.manual_seed(0)
    model = AutoencoderKL(TINY).eval()
    x = torch.rand(2, 5, 3, 16, 24) * 2 - 1  # (B, V, 3, H, W): leading dims are kept
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, 5, 4, 2, 3)
        assert model.decode(z).shape == (2, 5, 3, 16, 24)
        moments = model.encoder(x[0, :1])  # raw encoder output: mean is the first half of the channels
        torch.testing.assert_close(z[0, :1], (moments[:, :4] - 0.1) * 0.5)
        sampled = model.encode(x[0, :1], sample=True, generator=torch.Generator().manual_seed(1))
        assert not torch.allclose(sampled, z[0, :1])
    with pytest.raises(ValueError, match="multiples of 8"):
        model.encode(torch.zeros(1, 3, 12, 16))


def test_resnet_block_matches_functional_ops_in_float64():
    model = AutoencoderKL(TINY).double()
    block = model.encoder.down_blocks[1].resnets[0]  # 4 -> 8 channels: has a 1×1 shortcut
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = dict(block.named_parameters())
    h = F.silu(F.group_norm(x, 2, w["norm1.weight"], w["norm1.bias"], eps=1e-6))
    h = F.conv2d(h, w["conv1.weight"], w["conv1.bias"], padding=1)
    h = F.silu(F.group_norm(h, 2, w["norm2.weight"], w["norm2.bias"], eps=1e-6))
    h = F.conv2d(h, w["conv2.weight"], w["conv2.bias"], padding=1)
    expected = F.conv2d(x, w["conv_shortcut.weight"], w["conv_shortcut.bias"]) + h
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_attention_block_is_single_head_softmax_attention_with_residual():
    model = AutoencoderKL(TINY).double()
    attn = model.encoder.mid_block.attentions[0]
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 8, 3, 2, dtype=torch.float64)
    w = dict(attn.named_parameters())
    t = F.group_norm(x, 2, w["group_norm.weight"], w["group_norm.bias"], eps=1e-6)[0].reshape(8, 6).T  # (HW, C)
    q, k, v = (t @ w[f"{n}.weight"].T + w[f"{n}.bias"] for n in ("to_q", "to_k", "to_v"))
    probs = torch.softmax(q @ k.T / math.sqrt(8), dim=-1)
    out = (probs @ v) @ w["to_out.0.weight"].T + w["to_out.0.bias"]
    torch.testing.assert_close(attn(x), x + out.T.reshape(1, 8, 3, 2), rtol=1e-12, atol=1e-12)


def test_resamplers_pad_bottom_right_and_upsample_nearest():
    model = AutoencoderKL(TINY).double()
    down = model.encoder.down_blocks[0].downsamplers[0]
    up = model.decoder.up_blocks[0].upsamplers[0]
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    padded = torch.zeros(1, 4, 7, 7, dtype=torch.float64)
    padded[..., :6, :6] = x  # one zero row/column at the bottom/right only
    torch.testing.assert_close(down(x), F.conv2d(padded, down.conv.weight, down.conv.bias, stride=2))
    y = torch.randn(1, 8, 3, 3, dtype=torch.float64)
    repeated = y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(up(y), F.conv2d(repeated, up.conv.weight, up.conv.bias, padding=1))
