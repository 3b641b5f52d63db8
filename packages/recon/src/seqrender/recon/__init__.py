"""seqrender.recon — feed-forward Gaussian-splat reconstruction (4Real-Video-V2 §3.2): VGGT-style
aggregator with temporal layers, camera-token replacement, depth / Gaussian / camera heads, a pure
torch Gaussian rasteriser, and image metrics (PSNR, SSIM, LPIPS from local weights)."""

from seqrender.recon.aggregator import Aggregator, AggregatorConfig, load_vggt_checkpoint
from seqrender.recon.camera_tokens import replace_camera_tokens
from seqrender.recon.metrics import LPIPS, LPIPSUnavailable, load_lpips, lpips, psnr, ssim
from seqrender.recon.model import FeedForwardReconstructor, Reconstruction, ReconstructorConfig
from seqrender.recon.rasterizer import Gaussians, RasterConfig, Render, rasterize, render_gaussians

__all__ = [
    "Aggregator",
    "AggregatorConfig",
    "FeedForwardReconstructor",
    "Gaussians",
    "LPIPS",
    "LPIPSUnavailable",
    "RasterConfig",
    "Reconstruction",
    "ReconstructorConfig",
    "Render",
    "load_lpips",
    "load_vggt_checkpoint",
    "lpips",
    "psnr",
    "rasterize",
    "render_gaussians",
    "replace_camera_tokens",
    "ssim",
]
