"""Gaussian rasteriser speed: time vs Gaussians and pixels, one dense band vs culled row bands.

Dense = all pixels × all Gaussians in one block; chunked = the default bands of 8 image rows, each
seeing only the Gaussians whose support reaches it. The FLOP rate counts ~25 float ops per
pixel-Gaussian pair of the dense computation (quadratic form as a (P, 6) @ (6, N) product, exp,
alpha, transmittance, weighted colour/depth sums): an estimate, forward only.
"""

from __future__ import annotations

import torch

from _common import matmul_gflops, parse_args, report, time_interleaved
from seqrender.recon.rasterizer import RasterConfig, rasterize

FLOPS_PER_PAIR = 25


def scene(n: int, size: int, seed: int = 0):
    """n Gaussians about 1-2 pixels wide scattered in the view frustum of a size × size camera."""
    g = torch.Generator().manual_seed(seed)
    z = 2.0 + 2.0 * torch.rand(n, generator=g)
    uv = torch.rand(n, 2, generator=g) - 0.5
    means = torch.cat([uv * z[:, None], z[:, None]], dim=-1)
    scales = (0.5 + torch.rand(n, 3, generator=g)) * 3.0 / size
    quats = torch.randn(n, 4, generator=g)
    opac = 0.2 + 0.7 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    k = torch.tensor([[float(size), 0, size / 2], [0, float(size), size / 2], [0, 0, 1]])
    return [means, scales, quats, opac, colors], torch.eye(4), k


DENSE = RasterConfig(band_rows=1 << 30, chunk_elements=1 << 40)


def runner(n: int, size: int, cfg: RasterConfig, *, backward: bool):
    """A closure rendering the benchmark scene once (and back-propagating when `backward`)."""
    params, ext, k = scene(n, size)
    params = [p.requires_grad_(backward) for p in params]

    def run():
        out = rasterize(*params, ext, k, height=size, width=size, config=cfg)
        if backward:
            (out.color.sum() + out.depth.sum()).backward()

    return run


def main():
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    cases = [(256, 32), (1024, 32), (1024, 64)] if args.quick else [(256, 32), (1024, 32), (1024, 64), (4096, 64)]
    repeats = 3 if args.quick else 7
    gflops_mm = matmul_gflops(512 if args.quick else 1024)
    rows = []
    for n, size in cases:
        pairs = n * size * size
        for backward in (False, True):
            dense, chunked = time_interleaved(
                [runner(n, size, DENSE, backward=backward), runner(n, size, RasterConfig(), backward=backward)],
                repeats=repeats,
            )
            rows.append({
                "gaussians": n,
                "pixels": f"{size}x{size}",
                "pass": "fwd+bwd" if backward else "fwd",
                "dense_s": dense,
                "chunked_s": chunked,
                "dense/chunked": dense / chunked,
                "dense_GFLOP/s": None if backward else pairs * FLOPS_PER_PAIR / dense / 1e9,
            })
            if not backward:
                rows[-1]["dense_%_of_matmul"] = 100 * rows[-1]["dense_GFLOP/s"] / gflops_mm
    report(
        "Gaussian rasteriser (float32, CPU)",
        rows,
        json_path=args.json,
        matmul_GFLOP_per_s=gflops_mm,
        threads=torch.get_num_threads(),
        flops_per_pair=FLOPS_PER_PAIR,
    )


if __name__ == "__main__":
    main()
