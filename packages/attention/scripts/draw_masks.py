"""Draw each attention pattern of seqrender-attention as a PNG under packages/attention/docs/.

Run: python packages/attention/scripts/draw_masks.py  (matplotlib). Rows are queries, columns keys;
dark = may attend. Frame boundaries are drawn as thin lines.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from seqrender.attention import viewtime_mask, window_partition, window_valid_mask  # noqa: E402
from seqrender.attention.viewtime.mask import token_coordinates  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def window_mask(views: int, height: int, width: int, window: int) -> torch.Tensor:
    """(N, N) bool over tokens ordered (v, h, w): same K×K window, any frame."""
    ids = torch.arange(views * height * width).reshape(1, views, height, width)
    windows = window_partition(ids, window)
    valid = window_valid_mask(height, width, window, frames=views)
    window_of = torch.empty(ids.numel(), dtype=torch.long)
    for index, (tokens, keep) in enumerate(zip(windows, valid)):
        window_of[tokens[keep]] = index
    return window_of[:, None] == window_of[None]


def draw(mask: torch.Tensor, title: str, name: str, block: int, registers: int = 0) -> None:
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=100)
    ax.imshow(mask.numpy(), cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
    n = mask.shape[0]
    for edge in range(block, n, block):
        ax.axhline(edge - 0.5, color="tab:blue", lw=0.4)
        ax.axvline(edge - 0.5, color="tab:blue", lw=0.4)
    if registers:
        ax.axvline(n - 0.5, color="tab:red", lw=1.0)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(DOCS / name)
    plt.close(fig)


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    views, times, tokens = 3, 3, 2
    draw(viewtime_mask(views, times, tokens, num_registers=1)[0, 0],
         "fused view-time, V=T=3, S=2, +1 register", "mask_viewtime.png", tokens, registers=1)
    view, time = token_coordinates(views, times, tokens)
    draw(time[:, None] == time[None], "cross-view (same time)", "mask_cross_view.png", tokens)
    draw(view[:, None] == view[None], "cross-time (same view)", "mask_cross_time.png", tokens)
    frames, size = 2, 4
    frame = torch.arange(frames * size * size) // (size * size)
    draw(frame[:, None] == frame[None], "spatial, V=2, 4x4", "mask_spatial.png", size * size)
    for window in (1, 2, 3):
        draw(window_mask(frames, size, size, window), f"window K={window}, V=2, 4x4",
             f"mask_window_k{window}.png", size * size)


if __name__ == "__main__":
    main()
