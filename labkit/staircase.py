"""The staircase, shown: a mask thresholded at the network's size and then enlarged against the
logits enlarged first, on a zoomed crop of one photo where the two disagree most."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from labkit.viz import PHOTO_DPI, as_image, clean_axis, overlay_mask, to_numpy


def disagreement_window(first, second, side: int) -> tuple[slice, slice]:
    """The `side` x `side` window (smaller where the masks are) in which two masks of one photo
    differ on the most pixels; its rows and columns as slices."""
    differ = to_numpy(first).astype(bool) != to_numpy(second).astype(bool)
    if differ.ndim != 2:
        raise ValueError(f"masks must be (H, W), got shape {differ.shape}")
    if side < 1:
        raise ValueError(f"side must be at least 1 pixel, got {side}")
    rows, columns = min(side, differ.shape[0]), min(side, differ.shape[1])
    summed = np.pad(differ.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image
    windows = summed[rows:, columns:] - summed[:-rows, columns:] - summed[rows:, :-columns] + summed[:-rows, :-columns]
    top, left = np.unravel_index(int(np.argmax(windows)), windows.shape)
    top, left = int(top), int(left)
    return slice(top, top + rows), slice(left, left + columns)


def plot_upsampling_orders(photo, masks: dict[str, np.ndarray], window: tuple[slice, slice],
                           title: str = "") -> Figure:
    """The whole photo with the window marked, then the window zoomed once per mask (tinted, with
    its outline), drawn pixel for pixel so that blocks show as blocks.

    Args:
        photo: (H, W, 3) at its original size.
        masks: label -> (H, W) mask of the same photo, e.g. the two orders of `evaluate.mask_at_size`
            and the truth.
        window: rows and columns of the crop, e.g. from `disagreement_window`.
    """
    photo = as_image(photo)
    rows, columns = window
    fig, axes = plt.subplots(1, len(masks) + 1, figsize=(3.2 * (len(masks) + 1), 3.6), layout="constrained",
                             dpi=PHOTO_DPI)
    axes[0].imshow(photo)
    axes[0].add_patch(Rectangle((columns.start - 0.5, rows.start - 0.5), columns.stop - columns.start,
                                rows.stop - rows.start, fill=False, edgecolor="yellow", linewidth=2))
    axes[0].set_title(title or "the photo; the crop in yellow", fontsize=9)
    for ax, (label, mask) in zip(axes[1:], masks.items()):
        tinted = overlay_mask(photo, to_numpy(mask).astype(np.uint8))  # whole photo: no outline where the crop cuts
        ax.imshow(tinted[rows, columns], interpolation="nearest")
        ax.set_title(label, fontsize=9)
    for ax in axes:
        clean_axis(ax)
    return fig
