"""seqrender.recon — feed-forward Gaussian-splat reconstruction (4Real-Video-V2 §3.2): VGGT-style
aggregator with temporal layers, camera-token replacement, depth / Gaussian / camera heads, a pure
torch Gaussian rasteriser, image metrics (PSNR, SSIM, LPIPS from local weights) and geometry
metrics (Chamfer distance, volumetric IoU)."""

from seqrender.recon.aggregator import Aggregator, AggregatorConfig, load_vggt_checkpoint
from seqrender.recon.camera_tokens import replace_camera_tokens
from seqrender.recon.metrics import (LPIPS, LPIPSUnavailable, chamfer_distance, load_lpips, lpips, psnr, ssim,
                                     volume_iou, voxel_centres)
from seqrender.recon.camera_head_vggt import VGGTCameraHead
from seqrender.recon.dpt_vggt import VGGTDepthHead, VGGTDPTHead
from seqrender.recon.fit import FitConfig, fit_gaussians
from seqrender.recon.model import FeedForwardReconstructor, Reconstruction, ReconstructorConfig, load_vggt_reconstructor
from seqrender.recon.rasterizer import Gaussians, RasterConfig, Render, rasterize, render_gaussians

__all__ = [
    "Aggregator",
    "AggregatorConfig",
    "FeedForwardReconstructor",
    "FitConfig",
    "Gaussians",
    "LPIPS",
    "LPIPSUnavailable",
    "RasterConfig",
    "Reconstruction",
    "ReconstructorConfig",
    "Render",
    "VGGTCameraHead",
    "VGGTDPTHead",
    "VGGTDepthHead",
    "chamfer_distance",
    "fit_gaussians",
    "load_lpips",
    "load_vggt_checkpoint",
    "load_vggt_reconstructor",
    "lpips",
    "psnr",
    "rasterize",
    "render_gaussians",
    "replace_camera_tokens",
    "ssim",
    "volume_iou",
    "voxel_centres",
]
