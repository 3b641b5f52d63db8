"""Numerical parity with facebookresearch/vggt's own code on random weights.

`data/vggt_reference.pt` holds the outputs of VGGT's `DPTHead` (depth), `CameraHead`,
`Aggregator` (conv and DINOv2-S/14-reg patch embeddings) and its DINOv2 ViT in the original hub
models' settings (no registers, position grid resized by scale factor with offset 0.1, no
antialiasing; Kaleido's auxiliary encoder), run in float64 by
`make_vggt_reference.py` on the weights and inputs that `parameters_for` / `inputs_for` below
draw (each tensor from a generator seeded by its name, so both sides draw the same values whatever
their parameter order). Here the same weights go into seqrender's modules, which must reproduce
those outputs. VGGT's package is not on PyPI, so its outputs are stored rather than recomputed; the
file records the VGGT commit it came from. (This check found the depth head's residual units
adding x where VGGT, through its in-place ReLU, adds ReLU(x).)
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch

from seqrender.recon import AggregatorConfig, VGGTCameraHead, VGGTDepthHead
from seqrender.recon.aggregator import Aggregator
from seqrender.recon.dinov2 import DinoV2, DinoV2Config

REFERENCE = Path(__file__).with_name("data") / "vggt_reference.pt"

# Small sizes of each VGGT module; H×W = 42×70 (non-square, 3×5 patches of 14) also exercises
# DINOv2's position-embedding interpolation.
DEPTH = dict(dim_in=64, features=32, out_channels=(16, 32, 64, 64), patch_size=14, frames=2, size=(42, 70),
             patch_start_idx=5, layers=(4, 11, 17, 23))
CAMERA = dict(dim_in=64, trunk_depth=2, num_heads=4, mlp_ratio=4, init_values=0.01, iterations=4, batch=2, frames=3)
AGGREGATOR = {
    "conv": dict(config=dict(img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=4, patch_embed="conv"),
                 views=2, times=2, size=(42, 70), layers=(0, 1)),
    "dinov2": dict(config=dict(img_size=56, patch_size=14, embed_dim=384, depth=2, num_heads=6, patch_embed="dinov2",
                               dino_depth=12),
                   views=2, times=1, size=(42, 70), layers=(1,)),       # stored: the last layer
}

# The hub models' ViT (`DinoV2Config` defaults but sizes): 2 blocks of width 96, 4 heads, layer scale.
DINOV2 = dict(config=dict(embed_dim=96, depth=2, num_heads=4, patch_size=14, img_size=56), images=2, size=(42, 70))


def draw(name: str, shape, scale: float = 1.0) -> torch.Tensor:
    """A float64 standard-normal tensor × scale from a generator seeded by `name`."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale


def parameters_for(module: torch.nn.Module, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """{name: value} for every parameter of `module` (names starting with `skip` left out): norm
    weights 1 + 0.2 N, matrices and kernels N / √fan_in, the rest (biases, layer-scale gammas,
    tokens, position embeddings) 0.2 N, so no zero or identity default hides a term."""
    out = {}
    for name, p in module.named_parameters():
        if name.startswith(skip):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim == 1 and "norm" in name and leaf == "weight":
            out[name] = 1 + draw(name, p.shape, 0.2)
        elif p.ndim >= 2 and leaf == "weight":
            out[name] = draw(name, p.shape, 1 / math.sqrt(p[0].numel()))
        else:
            out[name] = draw(name, p.shape, 0.2)
    return out


def inputs_for(case: str) -> dict[str, torch.Tensor]:
    """The inputs of each case, in VGGT's layouts (float64)."""
    if case == "depth":
        h, w = DEPTH["size"]
        tokens = DEPTH["patch_start_idx"] + (h // 14) * (w // 14)
        return {f"tokens.{i}": draw(f"depth.tokens.{i}", (1, DEPTH["frames"], tokens, DEPTH["dim_in"]))
                for i in DEPTH["layers"]} | {"images": draw("depth.images", (1, DEPTH["frames"], 3, h, w)).sigmoid()}
    if case == "dinov2":
        return {"images": draw("dinov2.images", (DINOV2["images"], 3, *DINOV2["size"]))}   # normalised: any reals
    if case == "camera":
        return {"camera_tokens": draw("camera.tokens", (CAMERA["batch"], CAMERA["frames"], CAMERA["dim_in"]))}
    spec = AGGREGATOR[case.removeprefix("aggregator.")]
    return {"images": draw(f"{case}.images", (1, spec["views"], spec["times"], 3, *spec["size"])).sigmoid()}


def ours(case: str) -> torch.nn.Module:
    """seqrender's module for `case` with the drawn weights (its zero-initialised temporal layers kept)."""
    if case == "depth":
        model = VGGTDepthHead(DEPTH["dim_in"], patch_size=DEPTH["patch_size"], features=DEPTH["features"],
                              out_channels=DEPTH["out_channels"])
    elif case == "camera":
        model = VGGTCameraHead(CAMERA["dim_in"], trunk_depth=CAMERA["trunk_depth"], num_heads=CAMERA["num_heads"],
                               mlp_ratio=CAMERA["mlp_ratio"], init_values=CAMERA["init_values"],
                               iterations=CAMERA["iterations"])
    elif case == "dinov2":
        model = DinoV2(DinoV2Config(**DINOV2["config"]))
    else:
        model = Aggregator(AggregatorConfig(**AGGREGATOR[case.removeprefix("aggregator.")]["config"]))
    model = model.double()
    temporal = ("frame_temporal_blocks.", "global_temporal_blocks.")
    missing, unexpected = model.load_state_dict(parameters_for(model, skip=temporal), strict=False)
    assert not unexpected and all(k.startswith(temporal) for k in missing), (missing, unexpected)
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def check(got: torch.Tensor, expected: torch.Tensor):
    """float64 on our side against VGGT's float64 run stored in float32 (VGGT itself rounds its
    position embeddings and image normalisation to float32)."""
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_reference_file_names_its_source(reference):
    assert reference["meta"]["vggt_commit"] and reference["meta"]["dtype"] == "float64"


@torch.no_grad()
def test_depth_head_matches_vggt(reference):
    x = inputs_for("depth")
    frames, (h, w) = DEPTH["frames"], DEPTH["size"]
    patches = [x[f"tokens.{i}"][0, :, DEPTH["patch_start_idx"]:] for i in DEPTH["layers"]]   # (S, P, C)
    pred = ours("depth")(patches, x["images"][0])
    assert pred.depth.shape == (frames, h, w)
    check(pred.depth, reference["depth.depth"])
    check(pred.confidence, reference["depth.confidence"])


@torch.no_grad()
def test_camera_head_matches_vggt_at_every_iteration(reference):
    out = ours("camera").forward_all(inputs_for("camera")["camera_tokens"])
    assert len(out) == CAMERA["iterations"]
    for i, encoding in enumerate(out):
        check(encoding, reference[f"camera.iteration.{i}"])


@pytest.mark.parametrize("kind", sorted(AGGREGATOR))
@torch.no_grad()
def test_aggregator_matches_vggt_per_timestep(reference, kind):
    """Our (B, V, T) aggregator with its temporal layers at zero-init = VGGT run on each timestep."""
    case, spec = f"aggregator.{kind}", AGGREGATOR[kind]
    layers = ours(case)(inputs_for(case)["images"], layers=spec["layers"])
    for i, tokens in zip(spec["layers"], layers):
        for t in range(tokens.shape[2]):
            check(tokens[:, :, t], reference[f"{case}.layer.{i}.time.{t}"])


@torch.no_grad()
def test_dinov2_hub_settings_match_vggt_vision_transformer(reference):
    """[cls, patches] final-normed tokens at 42×70 px: the 4×4 position grid resized to 3×5 by scale
    factor (rows + 0.1) / 4, bicubic without antialiasing, as the original hub models do."""
    check(ours("dinov2")(inputs_for("dinov2")["images"]), reference["dinov2.tokens"])
