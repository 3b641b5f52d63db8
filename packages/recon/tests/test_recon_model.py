import pytest
import torch

from seqrender.recon.aggregator import AggregatorConfig
from seqrender.recon.metrics import LPIPS, LPIPSUnavailable
from seqrender.recon.model import FeedForwardReconstructor, ReconstructorConfig

AGG = AggregatorConfig(img_size=14, patch_size=7, embed_dim=16, depth=2, num_heads=2, patch_embed="conv")


def _config(**kw):
    return ReconstructorConfig(aggregator=AGG, head_layers=(0, 1), head_features=8, **kw)


def _toy(b=1, v=2, t=2, size=14):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(b, v, t, 3, size, size, generator=g)
    k = torch.tensor([[14.0, 0, 7.0], [0, 14.0, 7.0], [0, 0, 1]]).expand(b, v, t, 3, 3)
    ext = torch.eye(4).repeat(b, v, t, 1, 1)
    ext[:, :, :, 0, 3] = torch.linspace(-0.1, 0.1, v).view(1, v, 1)  # cameras side by side
    ext[:, :, :, 2, 3] = -0.5  # scene in front of the cameras
    return images, k, ext


def test_one_step_reduces_reconstruction_loss():
    torch.manual_seed(0)
    model = FeedForwardReconstructor(_config())
    images, k, ext = _toy()

    def loss():
        recon = model(images, intrinsics=k, extrinsics=ext)
        rendered = model.render(recon, k, ext, height=14, width=14)
        assert rendered.color.shape == images.shape
        return model.loss(rendered.color, images)["loss"]

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = loss()
    before.backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        after = loss()
    assert after < before
    assert model.gaussian_head.dpt.output.weight.abs().max() > 0  # the zero-initialised head learns


def test_reconstruction_layout_and_camera_token_replacement():
    torch.manual_seed(1)
    images, k, ext = _toy(b=2, v=2, t=3)
    recon = FeedForwardReconstructor(_config())(images, intrinsics=k, extrinsics=ext)
    assert recon.gaussians.means.shape == (2 * 3, 2 * 14 * 14, 3)
    assert recon.depth.shape == (2, 2, 3, 14, 14)
    # replacement: every timestep of a view gets the first timestep's camera
    pose = recon.pose_encoding
    torch.testing.assert_close(pose, pose[:, :, :1].expand_as(pose), rtol=0, atol=0)
    model = FeedForwardReconstructor(_config(replace_camera_tokens=False))
    torch.nn.init.normal_(model.camera_head.mlp[-1].weight)
    free = model(images).pose_encoding
    assert (free - free[:, :, :1]).abs().max() > 1e-4
    # Gaussians of timestep t come from the frames of timestep t only: the centre of pixel 0 of view 1
    g = model(images, intrinsics=k, extrinsics=ext).gaussians
    images2 = images.clone()
    images2[:, :, 2] = torch.rand_like(images2[:, :, 2])
    g2 = model(images2, intrinsics=k, extrinsics=ext).gaussians
    torch.testing.assert_close(g.means.view(2, 3, -1, 3)[:, :2], g2.means.view(2, 3, -1, 3)[:, :2], rtol=0, atol=0)


def test_predicted_cameras_used_without_given_ones():
    model = FeedForwardReconstructor(_config())
    images, _, _ = _toy()
    recon = model(images)
    assert recon.intrinsics.shape == (1, 2, 2, 3, 3) and recon.extrinsics.shape == (1, 2, 2, 4, 4)
    assert recon.gaussians.means.isfinite().all()
    with pytest.raises(ValueError, match="both"):
        model(images, intrinsics=recon.intrinsics)


def test_lpips_term_in_loss(tmp_path):
    torch.manual_seed(2)
    state = {k: (v.abs() if k.startswith("lin") else torch.randn_like(v) * 0.1) if not k.startswith("scaling") else v
             for k, v in LPIPS("alex").state_dict().items()}
    path = tmp_path / "lpips.pth"
    torch.save(state, path)
    model = FeedForwardReconstructor(_config(lpips_checkpoint=str(path), lpips_weight=0.5))
    a, b = torch.rand(1, 2, 1, 3, 32, 32), torch.rand(1, 2, 1, 3, 32, 32)
    out = model.loss(a, b)
    assert out["lpips"] > 0
    torch.testing.assert_close(out["loss"], out["mse"] + 0.5 * out["lpips"])
    with pytest.raises(LPIPSUnavailable):
        FeedForwardReconstructor(_config(lpips_checkpoint=str(tmp_path / "missing.pth")))
