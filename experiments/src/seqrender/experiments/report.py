"""What a run leaves in its directory: metrics.json, samples.png, loss_curve.png, and a printed table."""
from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from seqrender.experiments.checkpoint import atomic_write  # noqa: E402

GAP = 4     # pixels between the reference | ground truth | prediction groups
ZOOM = 3    # nearest-neighbour upscaling of the tiny images
TITLE_HEIGHT = 16  # pixels of the band a title line is written in
TITLE_SIZE = 12    # Pillow's default font at 10 px (its default size) squeezes spaces ("referencesat left")


@functools.cache
def title_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at TITLE_SIZE; its fixed bitmap font where Pillow was built without FreeType."""
    try:
        return ImageFont.load_default(size=TITLE_SIZE)
    except ImportError:
        return ImageFont.load_default()


def draw_title(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str) -> None:
    """One black title line with its top-left corner near xy (in `title_font()`)."""
    draw.text((xy[0] + 2, xy[1] + 1), text, fill="black", font=title_font())


def title_width(text: str) -> int:
    """Pixels a canvas needs across for draw_title's line at x = 0, with a 2-px margin each side."""
    return math.ceil(title_font().getlength(text)) + 4


def zoom_nearest(pixels: np.ndarray, zoom: int = ZOOM) -> Image.Image:
    """pixels (H, W, 3) uint8 -> (H·zoom, W·zoom) image, each pixel repeated (the tiny frames stay crisp)."""
    return Image.fromarray(pixels).resize((pixels.shape[1] * zoom, pixels.shape[0] * zoom), Image.NEAREST)


def write_titled(path: Path, pixels: np.ndarray, title: str, *, zoom: int = ZOOM) -> None:
    """pixels (H, W, 3) uint8 -> PNG: the image zoomed ×zoom (nearest) under one title line; a title
    wider than the image widens the canvas (white at the image's right) instead of being cut off."""
    img = zoom_nearest(pixels, zoom)
    canvas = Image.new("RGB", (max(img.width, title_width(title)), img.height + TITLE_HEIGHT), "white")
    draw_title(ImageDraw.Draw(canvas), (0, 0), title)
    canvas.paste(img, (0, TITLE_HEIGHT))
    atomic_write(path, lambda p: canvas.save(p, format="PNG"))


def write_metrics(path: Path, metrics: dict) -> None:
    """Strict JSON: a NaN/Inf number becomes null and its dotted path is listed under "null_reasons"."""
    reasons: dict[str, str] = {}
    clean = _finite_or_null(metrics, "", reasons)
    if reasons:
        clean["null_reasons"] = reasons
    text = json.dumps(clean, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def _finite_or_null(value, path: str, reasons: dict[str, str]):
    if isinstance(value, dict):
        return {k: _finite_or_null(v, f"{path}.{k}" if path else str(k), reasons) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v, f"{path}[{i}]", reasons) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        reasons[path] = f"not a finite number ({value})"
        return None
    return value


def _row(images: torch.Tensor, is_reference: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    """One eval item: references | ground-truth targets | predicted targets, (H, W', 3) uint8.

    images, pred: (V, 3, H, W) in [0, 1]; is_reference: (V,) bool."""
    groups = [images[is_reference], images[~is_reference], pred[~is_reference]]
    h = images.shape[-2]
    gap = np.full((h, GAP, 3), 0.6, dtype=np.float32)
    parts = []
    for g in groups:
        parts += [rearrange(g, "v c h w -> h (v w) c").numpy(), gap]
    return (np.concatenate(parts[:-1], axis=1) * 255).round().astype(np.uint8)


def write_samples(path: Path, samples: dict, *, rows: int) -> None:
    """samples: {setting: (batches, predictions)} -> one PNG, a titled block of rows per setting."""
    blocks = []
    for setting, (batches, preds) in samples.items():
        items = [(b.images[i], b.is_reference[i], p[i]) for b, p in zip(batches, preds) for i in range(len(p))]
        lines = [_row(*item) for item in items[:rows]]
        if lines:
            blocks.append((setting, np.concatenate([np.pad(r, ((1, 1), (0, 0), (0, 0)), constant_values=255)
                                                    for r in lines])))
    titles = [f"{setting}: references | ground truth | prediction" for setting, _ in blocks]
    width = max(*(b.shape[1] * ZOOM for _, b in blocks), *map(title_width, titles))
    canvas = Image.new("RGB", (width, sum(b.shape[0] * ZOOM + TITLE_HEIGHT for _, b in blocks)), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    for title, (_, block) in zip(titles, blocks):
        draw_title(draw, (0, y), title)
        img = zoom_nearest(block)
        canvas.paste(img, (0, y + TITLE_HEIGHT))
        y += TITLE_HEIGHT + img.height
    atomic_write(path, lambda p: canvas.save(p, format="PNG"))


def write_loss_curve(path: Path, losses: list[float]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    window = max(1, len(losses) // 50)
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="velocity MSE (targets)", yscale="log", title="training loss")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)


def _cell(scores: dict) -> str:
    """"15.21 ±0.40 / 0.512 ±0.011": means with the half-width of their 95 % interval."""
    parts = []
    for name, digits in (("psnr", 2), ("ssim", 3)):
        mean, ci = scores.get(name), scores.get(f"{name}_ci95")
        if mean is None:
            parts.append("n/a")
            continue
        half = f" ±{(ci[1] - ci[0]) / 2:.{digits}f}" if ci else ""
        parts.append(f"{mean:.{digits}f}{half}")
    return " / ".join(parts)


def print_table(results: dict) -> None:
    """One row per (setting, method): PSNR / SSIM with 95 % half-widths, and the paired difference to
    "trained" where there is one."""
    table = Table(title="held-out evaluation (PSNR dB / SSIM, ±95 % bootstrap half-width over items)")
    for column in ("setting", "method", "PSNR / SSIM", "trained − method (PSNR, 95 % CI)"):
        table.add_column(column, justify="left" if column in ("setting", "method") else "right")
    for setting, rows in results.items():
        for method, scores in rows.items():
            diff = scores.get("psnr_minus_trained")
            gap = ""
            if diff and diff.get("mean") is not None:
                lo, hi = diff["ci95"]
                gap = f"{-diff['mean']:+.2f} [{-hi:+.2f}, {-lo:+.2f}]"
            table.add_row(setting, method, _cell(scores), gap)
    Console(width=None if sys.stdout.isatty() else 1000).print(table)  # a pipe: never cut column names


def _write_titled(path: Path, grid: np.ndarray, title: str) -> None:
    """grid (H, W, 3) float in [0, 1] -> PNG: the grid zoomed ×ZOOM (nearest) under one title line."""
    write_titled(path, (np.clip(grid, 0, 1) * 255).round().astype(np.uint8), title)


def write_image_grid(path: Path, images: torch.Tensor, *, title: str) -> None:
    """images (R, N, 3, H, W) in [0, 1] -> one PNG of R rows of N images under a title line."""
    _write_titled(path, rearrange(images, "r n c h w -> (r h) (n w) c").numpy(), title)


def write_orbit(path: Path, orbits: dict[int, list]) -> None:
    """orbits {number of references: [Orbit, ...]} -> one PNG: per scene a ground-truth row, then per
    reference count a row "references | 8 generated views"."""
    counts = sorted(orbits)
    scenes = len(orbits[counts[0]])
    ref_slots = max(counts)
    rows = []
    for i in range(scenes):
        truth = orbits[counts[0]][i].truth
        h, w = truth.shape[-2:]
        blank = torch.ones(ref_slots, 3, h, w)
        lines = [("truth", blank, truth)]
        for n in counts:
            o = orbits[n][i]
            refs = torch.cat([o.references, torch.ones(ref_slots - len(o.references), 3, h, w)])
            lines.append((f"{n} ref", refs, o.generated))
        for _, refs, views in lines:
            gap = np.full((h, GAP, 3), 0.6, dtype=np.float32)
            rows.append(np.concatenate([rearrange(refs, "v c h w -> h (v w) c").numpy(), gap,
                                        rearrange(views, "v c h w -> h (v w) c").numpy()], axis=1))
        rows.append(np.ones((GAP, rows[-1].shape[1], 3), dtype=np.float32))
    _write_titled(path, np.concatenate(rows[:-1]), "per scene: ground truth; generated from " +
                  ", ".join(f"{n}" for n in counts) + " reference(s) (references at left)")
