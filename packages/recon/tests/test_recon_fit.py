"""Per-scene Gaussian fitting (the feed-forward reconstruction's baseline)."""
import pytest
import torch

from seqrender.recon.fit import FitConfig, activate, fit_gaussians
from seqrender.recon.rasterizer import Gaussians, RasterConfig, render_gaussians


def cameras():
    k = torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]).repeat(2, 1, 1)
    e = torch.eye(4).repeat(2, 1, 1)
    e[:, 2, 3] = 3.0                                                     # both look down +z from z = −3
    e[1, :3, :3] = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])    # the second from the side
    e[1, :3, 3] = torch.tensor([0.0, 0, 3.0])
    return k, e


def test_fit_reproduces_a_target_scene_and_lowers_the_loss():
    k, e = cameras()
    target = Gaussians(means=torch.tensor([[[0.2, -0.1, 0.0], [-0.3, 0.2, 0.1]]]), scales=torch.full((1, 2, 3), 0.25),
                       rotations=torch.tensor([1.0, 0, 0, 0]).expand(1, 2, 4), opacities=torch.full((1, 2), 0.9),
                       colors=torch.tensor([[[1.0, 0.2, 0.1], [0.1, 0.3, 1.0]]]))
    raster = RasterConfig(background=(1.0, 1.0, 1.0))
    images = render_gaussians(target, e[None], k[None], height=8, width=8, config=raster).color[0]
    fitted, losses = fit_gaussians(images, k, e, config=FitConfig(num_gaussians=64, iterations=60, extent=0.8), raster=raster)
    assert len(losses) == 60 and losses[-1] < 0.25 * losses[0]
    again = render_gaussians(fitted, e[None], k[None], height=8, width=8, config=raster).color[0]
    torch.testing.assert_close(((again - images) ** 2).mean(), torch.tensor(losses[-1]), rtol=0.5, atol=1e-3)


def test_initialisation_and_activation():
    p = {"means": torch.zeros(3, 3), "scales": torch.full((3, 3), -1.0), "rotations": torch.tensor([2.0, 0, 0, 0]).repeat(3, 1),
         "opacities": torch.zeros(3), "colors": torch.rand(3, 3)}
    g = activate(p)
    torch.testing.assert_close(g.scales, torch.full((1, 3, 3), 1 / torch.e))
    torch.testing.assert_close(g.opacities, torch.full((1, 3), 0.5))
    torch.testing.assert_close(g.rotations[0, :, 0], torch.ones(3))
    _, losses = fit_gaussians(torch.rand(2, 3, 8, 8), *cameras(), config=FitConfig(num_gaussians=4, iterations=0))
    assert losses == []
    with pytest.raises(ValueError, match="init_opacity"):
        FitConfig(init_opacity=1.0)
