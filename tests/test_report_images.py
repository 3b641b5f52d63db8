"""The titled PNG writers: the picture under the title band is the input, zoomed by nearest
neighbour (checked against numpy's repeat), the title's glyphs fit their band, and a title wider
than the picture widens the canvas instead of being cut off."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from seqrender.experiments import report
from seqrender.experiments.render.outputs import GAP, write_rows
from seqrender.experiments.report import (TITLE_HEIGHT, ZOOM, draw_title, title_font, title_width, write_image_grid,
                                          write_samples)

TITLE = "per scene: ground truth; generated from 1, 3 reference(s) (references at left)"


def zoomed(pixels: np.ndarray, zoom: int) -> np.ndarray:
    """(H, W, 3) -> (H·zoom, W·zoom, 3), each pixel repeated: nearest-neighbour upscaling."""
    return pixels.repeat(zoom, axis=0).repeat(zoom, axis=1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def title_band_uncut(text: str) -> np.ndarray:
    """(TITLE_HEIGHT, 2000) grey band of draw_title's line on a canvas far wider than any title."""
    canvas = Image.new("L", (2000, TITLE_HEIGHT), 255)
    draw_title(ImageDraw.Draw(canvas), (0, 0), text)
    return np.asarray(canvas)


@pytest.mark.parametrize("frames", [3, 20])   # a grid narrower than TITLE, and one wider
def test_image_grid_is_the_zoomed_images_under_the_whole_title(tmp_path, frames):
    images = torch.rand(2, frames, 3, 8, 8, generator=torch.Generator().manual_seed(0))   # (R, N, 3, H, W)
    write_image_grid(tmp_path / "grid.png", images, title=TITLE)
    out = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    grid = to_uint8(images.permute(0, 3, 1, 4, 2).reshape(2 * 8, frames * 8, 3))    # rows of frames
    width = out.shape[1]
    np.testing.assert_array_equal(out[TITLE_HEIGHT:, :frames * 8 * ZOOM], zoomed(grid, ZOOM))
    assert (out[TITLE_HEIGHT:, frames * 8 * ZOOM:] == 255).all()                   # white right of the images
    band, uncut = out[:TITLE_HEIGHT].min(axis=2), title_band_uncut(TITLE)
    ink = np.nonzero((uncut < 128).any(axis=0))[0]                                 # columns of the title's glyphs
    assert ink.max() < width - 1, "title cut off"
    assert width <= max(frames * 8 * ZOOM, ink.max() + 8), "a needless margin"
    np.testing.assert_array_equal(band < 128, uncut[:, :width] < 128)


def test_rows_sheet_lays_blocks_with_grey_gaps(tmp_path):
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 6, 6, generator=gen), torch.rand(1, 3, 6, 6, generator=gen)
    write_rows(tmp_path / "rows.png", [[a, b]], title="row sheet", zoom=2)
    out = np.asarray(Image.open(tmp_path / "rows.png").convert("RGB"))
    frames = [to_uint8(f.permute(1, 2, 0)) for f in (a[0], a[1])]
    line = np.concatenate([*frames, np.full((6, GAP, 3), 153, np.uint8), to_uint8(b[0].permute(1, 2, 0))], axis=1)
    line = np.pad(line, ((1, 1), (0, 0), (0, 0)), constant_values=255)              # one white row above and below
    np.testing.assert_array_equal(out[TITLE_HEIGHT:, :line.shape[1] * 2], zoomed(line, 2))
    assert (out[TITLE_HEIGHT:, line.shape[1] * 2:] == 255).all()        # a wider title widens the canvas


@pytest.mark.parametrize("freetype", [True, False])
def test_title_glyphs_fit_their_band(monkeypatch, freetype):
    """draw_title's glyphs (with descenders and brackets) stay inside the band, in the 12-px FreeType
    font and in the bitmap font Pillow falls back to when it was built without FreeType."""
    if not freetype:
        def without_freetype(size=None):                                     # Pillow's own behaviour there
            if size is not None:
                raise ImportError("The _imagingft C module is not installed")
            return ImageFont.load_default_imagefont()
        monkeypatch.setattr(ImageFont, "load_default", without_freetype)
    title_font.cache_clear()
    try:
        canvas = Image.new("L", (1200, 3 * TITLE_HEIGHT), 255)
        draw_title(ImageDraw.Draw(canvas), (0, TITLE_HEIGHT), TITLE + " gjpqy()")
        ink, columns = np.nonzero(np.asarray(canvas) < 128)                # rows and columns of glyph pixels
        assert isinstance(title_font(), ImageFont.FreeTypeFont) == freetype
        width = title_width(TITLE + " gjpqy()")
    finally:
        title_font.cache_clear()
    assert ink.size and ink.min() >= TITLE_HEIGHT and ink.max() < 2 * TITLE_HEIGHT
    assert columns.max() < width - 1 <= columns.max() + 8                  # title_width holds the line, barely


def test_samples_sheet_is_wide_enough_for_its_titles(tmp_path):
    """samples.png of one 1->1 item (3 frames of 8 px: narrower than its title) keeps the whole title,
    and the row under it is references | ground truth | prediction with grey gaps, zoomed."""
    gen = torch.Generator().manual_seed(2)
    images, pred = torch.rand(1, 2, 3, 8, 8, generator=gen), torch.rand(1, 2, 3, 8, 8, generator=gen)
    batch = SimpleNamespace(images=images, is_reference=torch.tensor([[True, False]]))
    write_samples(tmp_path / "samples.png", {"1->1": ([batch], [pred])}, rows=1)
    out = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    title = "1->1: references | ground truth | prediction"
    uncut = title_band_uncut(title)
    ink = np.nonzero((uncut < 128).any(axis=0))[0]
    assert ink.max() < out.shape[1] - 1, "title cut off"
    np.testing.assert_array_equal(out[:TITLE_HEIGHT].min(axis=2) < 128, uncut[:, :out.shape[1]] < 128)
    grey = np.full((8, report.GAP, 3), 153, np.uint8)                   # report's gap: 0.6 grey
    frames = [to_uint8(f.permute(1, 2, 0)) for f in (images[0, 0], images[0, 1], pred[0, 1])]
    line = np.concatenate([frames[0], grey, frames[1], grey, frames[2]], axis=1)
    line = np.pad(line, ((1, 1), (0, 0), (0, 0)), constant_values=255)
    np.testing.assert_array_equal(out[TITLE_HEIGHT:, :line.shape[1] * ZOOM], zoomed(line, ZOOM))
    assert (out[TITLE_HEIGHT:, line.shape[1] * ZOOM:] == 255).all()
