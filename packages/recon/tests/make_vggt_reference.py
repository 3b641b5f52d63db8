"""Write `data/vggt_reference.pt`: the outputs of facebookresearch/vggt's own modules on the weights
and inputs `test_recon_vggt_parity.py` draws, run in float64 (stored in float32).

Needs VGGT's source importable as `vggt` (a checkout of github.com/facebookresearch/vggt on
PYTHONPATH, or `pip install` of it; not a dependency of this repository):

    PYTHONPATH=/path/to/vggt python packages/recon/tests/make_vggt_reference.py --commit <vggt commit>
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).parent


def parity_module():
    spec = importlib.util.spec_from_file_location("vggt_parity", HERE / "test_recon_vggt_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_drawn_weights(module: torch.nn.Module, p) -> torch.nn.Module:
    """VGGT's module with the test's drawn weights (every parameter replaced), float64, eval."""
    module = module.double()
    drawn = p.parameters_for(module)
    module.load_state_dict(drawn, strict=False)
    assert all(torch.equal(v, drawn[k]) for k, v in module.named_parameters())
    return module.eval()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", required=True, help="the VGGT commit the source on PYTHONPATH is at")
    ap.add_argument("--out", default=str(HERE / "data" / "vggt_reference.pt"))
    args = ap.parse_args()
    # VGGT is a source checkout, not a dependency (nothing installs it): imported by name at run time.
    CameraHead = importlib.import_module("vggt.heads.camera_head").CameraHead
    DPTHead = importlib.import_module("vggt.heads.dpt_head").DPTHead
    Aggregator = importlib.import_module("vggt.models.aggregator").Aggregator

    p = parity_module()
    out = {}
    d = p.DEPTH
    head = with_drawn_weights(DPTHead(dim_in=d["dim_in"], output_dim=2, activation="exp", conf_activation="expp1",
                                      features=d["features"], out_channels=list(d["out_channels"]),
                                      patch_size=d["patch_size"]), p)
    x = p.inputs_for("depth")
    tokens = [x.get(f"tokens.{i}", torch.zeros_like(x[f"tokens.{d['layers'][0]}"])) for i in range(24)]
    depth, confidence = head(tokens, x["images"], patch_start_idx=d["patch_start_idx"])
    out["depth.depth"], out["depth.confidence"] = depth[0, ..., 0], confidence[0]

    c = p.CAMERA
    head = with_drawn_weights(CameraHead(dim_in=c["dim_in"], trunk_depth=c["trunk_depth"], num_heads=c["num_heads"],
                                         mlp_ratio=c["mlp_ratio"], init_values=c["init_values"],
                                         pose_encoding_type="absT_quaR_FoV"), p)
    camera_tokens = p.inputs_for("camera")["camera_tokens"][:, :, None]               # (B, S, 1, C)
    for i, encoding in enumerate(head([camera_tokens], num_iterations=c["iterations"])):
        out[f"camera.iteration.{i}"] = encoding

    for kind, spec in p.AGGREGATOR.items():
        config = dict(spec["config"])
        if kind == "dinov2":                    # VGGT names its DINOv2 variants; ours takes a depth
            assert config.pop("dino_depth") == 12 and config["embed_dim"] == 384
            config["patch_embed"] = "dinov2_vits14_reg"
        model = with_drawn_weights(Aggregator(**config), p)
        images = p.inputs_for(f"aggregator.{kind}")["images"]                        # (B, V, T, 3, H, W)
        for t in range(images.shape[2]):
            layers, _ = model(images[:, :, t].contiguous())
            for i in spec["layers"]:
                out[f"aggregator.{kind}.layer.{i}.time.{t}"] = layers[i]

    vit = importlib.import_module("vggt.layers.vision_transformer")
    attention = importlib.import_module("vggt.layers.attention").MemEffAttention
    block = partial(importlib.import_module("vggt.layers.block").Block, attn_class=attention)
    config = p.DINOV2["config"]                                    # the hub models' other settings:
    model = with_drawn_weights(vit.DinoVisionTransformer(
        **config, mlp_ratio=4, block_fn=block, init_values=1.0, block_chunks=0, num_register_tokens=0,
        interpolate_antialias=False, interpolate_offset=0.1), p)
    features = model.forward_features(p.inputs_for("dinov2")["images"])
    out["dinov2.tokens"] = torch.cat([features["x_norm_clstoken"][:, None], features["x_norm_patchtokens"]], 1)

    out = {k: v.float().contiguous() for k, v in out.items()}
    out["meta"] = {"vggt_commit": args.commit, "dtype": "float64", "torch": str(torch.__version__)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out)
    print(f"wrote {args.out}: {len(out) - 1} tensors, {sum(v.numel() for k, v in out.items() if k != 'meta')} values")


if __name__ == "__main__":
    main()
