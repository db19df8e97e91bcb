"""Figures for the notebooks and reports: every function returns a Figure and never calls plt.show().

Figures are made with `plt.subplots`, so a notebook displays each one once; `save_figure` writes
it under reports/figures/ with a stable name (`00_samples.png`) that the reports link to, and
`figure_sliders` puts sliders under a figure that redraw it.
Inputs are numpy arrays (torch tensors are converted): photos (H, W, 3) uint8, masks (H, W) with
0 = background, 1 = pet and IGNORE_INDEX (255) = not scored, drawn grey.
"""

import base64
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from labkit import paths
from labkit.data.images import IGNORE_INDEX
from labkit.history import EpochRecord

IGNORE_COLOUR = (128, 128, 128)
# Pets are mostly brown, orange, black, grey or white: a blue tint and a magenta outline stand out
# against every coat and against most backgrounds, where an orange tint vanished on orange fur.
PET_TINT = (0, 110, 255)
OUTLINE_COLOUR = (255, 0, 220)
MODEL_NAMES = {"unet": "UNet", "resnet34_unet": "ResNet34-UNet"}
# Photos compress badly as PNG: figures of photos are drawn at 72 dpi, and a notebook stores each as
# the smaller of its JPEG and its PNG (`stored_picture`): about a third for photos, while photos
# enlarged into blocks of pixels stay PNG. Charts stay PNG, whose lines stay sharp. Files under
# reports/figures/ are PNG whatever they show.
PHOTO_DPI = 72
PHOTO_JPEG = {"quality": 90, "subsampling": 0}  # Pillow's settings; full-resolution colour keeps mask edges crisp
MASK_COLOURS = {"background": (0, 0, 0), "pet": (255, 255, 255), "ignored": IGNORE_COLOUR}
TRIMAP_COLOURS = {1: ("pet", (240, 150, 40)), 2: ("background", (40, 60, 120)), 3: ("border", (250, 240, 120))}
# Correct pixels are quiet (white pet, black background) so the mistakes stand out in colour.
ERROR_COLOURS = {"true positive": (235, 235, 235), "false positive (extra pet)": (230, 40, 40),
                 "false negative (missed pet)": (40, 110, 255), "true negative": (0, 0, 0),
                 "ignored": IGNORE_COLOUR}


class PhotoFigure(Figure):
    """A figure made of photos (`photo_subplots`): a notebook stores it as the smaller of its JPEG
    and its PNG (`stored_picture`), not always as a PNG."""


def photo_subplots(rows: int, columns: int, **kwargs):
    """plt.subplots for a figure of photos: a PhotoFigure at PHOTO_DPI, laid out with constrained layout."""
    return plt.subplots(rows, columns, FigureClass=PhotoFigure, dpi=PHOTO_DPI, layout="constrained", **kwargs)


def store_photo_pictures(shell=None) -> None:
    """In this IPython kernel, show (and so store) each PhotoFigure as one picture, the smaller of
    its JPEG and its PNG (`stored_picture`); other figures are untouched.

    IPython picks a figure's formats by its type, most specific first, so a PhotoFigure's own
    entries win over the PNG that the inline backend registers for every Figure; an entry that
    returns None leaves its format out. IPython asks for the PNG before the JPEG, so the PNG's
    entry encodes both and chooses, and the JPEG's takes that choice instead of encoding again."""
    from IPython import get_ipython

    shell = shell or get_ipython()
    if shell is None:
        return
    chosen: dict[int, tuple[str, str]] = {}  # the figure being shown -> (mime type, data) stored for it

    def as_png(fig: Figure) -> str | None:
        chosen.clear()
        mime, data = chosen[id(fig)] = stored_picture(fig)
        return data if mime == "image/png" else None

    def as_jpeg(fig: Figure) -> str | None:
        mime, data = chosen.pop(id(fig), None) or stored_picture(fig)
        return data if mime == "image/jpeg" else None

    shell.display_formatter.formatters["image/png"].for_type(PhotoFigure, as_png)
    shell.display_formatter.formatters["image/jpeg"].for_type(PhotoFigure, as_jpeg)


def model_label(key: str) -> str:
    """'resnet34_unet' -> 'ResNet34-UNet': the name a reader knows, for titles and legends."""
    return MODEL_NAMES.get(key, key)


def zoomed_limits(low: float, high: float, margin: float = 0.15) -> tuple[float, float]:
    """Axis limits around [low, high] with a margin, clipped to [0, 1]: differences of 0.01 stay visible."""
    span = max(high - low, 0.02)
    return max(0.0, low - margin * span), min(1.0, high + margin * span)


def to_numpy(array) -> np.ndarray:
    """A numpy view of a numpy array, list or (CPU or GPU) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def as_image(image) -> np.ndarray:
    """A (H, W, 3) uint8 photo from uint8 or [0, 1] float, channels last or (3, H, W)."""
    image = to_numpy(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:
        image = image.transpose(1, 2, 0)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a photo of shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        if image.size and image.max() > 1:
            raise ValueError("a float photo must hold values in [0, 1]; pass uint8 for values 0..255")
        image = np.clip(np.rint(image.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return image


def as_mask(mask, like: np.ndarray) -> np.ndarray:
    """A (H, W) mask checked against the photo (or mask) it belongs to."""
    mask = to_numpy(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != like.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} does not match image of shape {like.shape[:2]}")
    return mask


def patches(colours: dict) -> list[Patch]:
    """Legend handles for a {label: (r, g, b)} colour table."""
    return [Patch(facecolor=np.array(rgb) / 255, edgecolor="0.5", label=label) for label, rgb in colours.items()]


def error_legend_handles() -> list[Patch]:
    """Legend handles explaining the colours of `error_map`, for `fig.legend(handles=...)`."""
    return patches(ERROR_COLOURS)


def clean_axis(ax: plt.Axes) -> None:
    """Hide ticks and frame of an image panel but keep its title and y label."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pet pixels within `width` pixels of the background: the inner edge of the mask, (H, W) bool."""
    pet = mask == 1
    inner = pet.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1], :] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return pet & ~inner


def overlay_mask(image, mask, color=PET_TINT, alpha: float = 0.4, outline=OUTLINE_COLOUR) -> np.ndarray:
    """The photo with pet pixels tinted `color` and their edge drawn in `outline` (None: no edge);
    ignored pixels tinted grey, background unchanged. The edge is about 1/150 of the photo's
    shorter side (at least one pixel), inside the mask, so the fur it covers stays visible."""
    image = as_image(image)
    mask = as_mask(mask, image)
    blended = image.astype(np.float32)
    for value, tint in ((1, color), (IGNORE_INDEX, IGNORE_COLOUR)):
        where = mask == value
        blended[where] = (1 - alpha) * blended[where] + alpha * np.asarray(tint, np.float32)
    if outline is not None:
        blended[mask_outline(mask, max(1, round(min(mask.shape) / 150)))] = outline
    return np.rint(blended).astype(np.uint8)


def mask_to_rgb(mask) -> np.ndarray:
    """Binary mask as a picture: pet white, background black, ignored grey."""
    mask = to_numpy(mask)
    picture = np.zeros((*mask.shape, 3), np.uint8)
    picture[mask == 1] = MASK_COLOURS["pet"]
    picture[mask == IGNORE_INDEX] = IGNORE_COLOUR
    return picture


def error_map(prediction, truth) -> np.ndarray:
    """Where a prediction is right and wrong, coloured by ERROR_COLOURS (uint8 (H, W, 3)).

    True positives near-white, false positives red, false negatives blue, true negatives black,
    pixels whose truth is IGNORE_INDEX grey. `prediction` is a bool/0-1 mask or probabilities
    (thresholded at 0.5).
    """
    truth = to_numpy(truth)
    predicted_pet = as_mask(prediction, truth) > 0.5
    picture = np.zeros((*truth.shape, 3), np.uint8)
    cases = [predicted_pet & (truth == 1), predicted_pet & (truth == 0), ~predicted_pet & (truth == 1),
             ~predicted_pet & (truth == 0), truth == IGNORE_INDEX]
    for where, colour in zip(cases, ERROR_COLOURS.values()):
        picture[where] = colour
    return picture


def show_samples(images, masks=None, titles=None, columns: int = 4) -> Figure:
    """A grid of photos with their masks tinted on top (plain photos when masks is None)."""
    count = len(images)
    if count == 0:
        raise ValueError("show_samples needs at least one image")
    rows = -(-count // columns)
    fig, axes = photo_subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= count:
            ax.remove()
            continue
        image = images[index] if masks is None else overlay_mask(images[index], masks[index])
        ax.imshow(as_image(image))
        ax.set_title(titles[index] if titles else "", fontsize=9)
        clean_axis(ax)
    return fig


def show_trimap(image, trimap, mask) -> Figure:
    """One photo, its three-class trimap and the binary mask made from it, side by side."""
    image = as_image(image)
    trimap = as_mask(trimap, image)
    coloured = np.zeros_like(image)
    for value, (_, rgb) in TRIMAP_COLOURS.items():
        coloured[trimap == value] = rgb
    mask = as_mask(mask, image)
    fig, axes = photo_subplots(1, 3, figsize=(11, 4.2))
    panels = [(image, "photo"), (coloured, "trimap"), (mask_to_rgb(mask), "binary mask")]
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(picture)
        ax.set_title(title)
        clean_axis(ax)
    trimap_legend = {f"{value} = {label}": rgb for value, (label, rgb) in TRIMAP_COLOURS.items()}
    axes[1].legend(handles=patches(trimap_legend), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=3,
                   frameon=False, fontsize=9)
    shown = {"pet", "background"} | ({"ignored"} if (mask == IGNORE_INDEX).any() else set())
    mask_legend = {label: rgb for label, rgb in MASK_COLOURS.items() if label in shown}
    axes[2].legend(handles=patches(mask_legend), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=3,
                   frameon=False, fontsize=9)
    return fig


def plot_size_distribution(sizes) -> Figure:
    """Original photo sizes: width against height, and a histogram of aspect ratios (width / height)."""
    heights, widths = to_numpy(sizes).reshape(-1, 2).T
    fig, (scatter, histogram) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    scatter.scatter(widths, heights, s=8, alpha=0.5)
    scatter.set(xlabel="width (pixels)", ylabel="height (pixels)", title=f"Photo sizes ({len(heights)} photos)")
    histogram.hist(widths / heights, bins=30, color="C1")
    histogram.axvline(1.0, color="0.3", linestyle="--", label="square")
    histogram.set(xlabel="aspect ratio (width / height)", ylabel="photos", title="Aspect ratios")
    histogram.yaxis.set_major_locator(MaxNLocator(integer=True))
    histogram.legend()
    return fig


def plot_foreground_fraction(fractions, labels=None) -> Figure:
    """Histogram of the share of pet pixels per image, one colour per label (e.g. species)."""
    fractions = to_numpy(fractions).astype(float)
    labels = np.asarray(labels if labels is not None else ["all images"] * len(fractions))
    bins = np.linspace(0, 1, 31)
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for index, label in enumerate(sorted(set(labels))):
        values = fractions[labels == label]
        ax.hist(values, bins=bins, alpha=0.5, color=f"C{index}", label=f"{label} (mean {values.mean():.2f})")
        ax.axvline(values.mean(), color=f"C{index}", linestyle="--")
    ax.set(xlabel="fraction of pixels that are pet (dashed: mean)", ylabel="images",
           title="How much of each photo is pet?")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return fig


@dataclass(frozen=True)
class Curve:
    """One run's training curve: the training loss and a Dice at each epoch (or step)."""

    points: list[int]  # epoch or step numbers: the x axis
    loss: list[float]
    dice: list[float]

    @classmethod
    def of_history(cls, history: list[EpochRecord], dice_field: str = "valid_dice") -> "Curve":
        """A training history's curve: training loss and `dice_field` at each epoch."""
        return cls([record.epoch for record in history], [record.train_loss for record in history],
                   [getattr(record, dice_field) for record in history])

    @classmethod
    def of_rows(cls, rows: list[dict], unit: str = "epoch", dice_key: str = "valid_dice", label: str = "") -> "Curve":
        """The curve of rows read from a history.csv or written by a notebook's own training loop
        (`{"step": 3, "train_loss": 0.41, "batch_dice": 0.77}`): `unit` and `dice_key` name their keys.

        Raises:
            ValueError: a key is missing; names the run by `label`.
        """
        missing = {unit, "train_loss", dice_key} - set(rows[0] if rows else {})
        if missing:
            raise ValueError(f"history of run {label!r} lacks {sorted(missing)}; pass the rows of history.csv")
        return cls([row[unit] for row in rows], [row["train_loss"] for row in rows], [row[dice_key] for row in rows])


def plot_history(histories: dict[str, list], unit: str = "epoch", dice_label: str = "validation Dice",
                 dice_key: str = "valid_dice") -> Figure:
    """Training loss and validation Dice against epoch (or `unit`), one line per run, best starred.

    Args:
        histories: {run label or model key: its `EpochRecord`s, or rows read from a history.csv or
            written by a training loop of one's own (dicts)}.
        unit: the rows' key for the x axis ("epoch", or "step" for a loop that is not in epochs).
        dice_label: what the Dice is measured on, for the right panel's labels.
        dice_key: the Dice's key or EpochRecord field ("valid_dice" in training histories; a loop
            that scores its own batch names it for what it is, e.g. "batch_dice").
    """
    curves = {}
    for label, history in histories.items():
        if history and all(isinstance(record, EpochRecord) for record in history):
            curves[label] = Curve.of_history(history, dice_key)
        else:
            curves[label] = Curve.of_rows(history, unit, dice_key, label)
    return plot_curves(curves, unit, dice_label)


def plot_curves(curves: dict[str, Curve], unit: str = "epoch", dice_label: str = "validation Dice") -> Figure:
    """Training loss and Dice against `unit`, one line per run, each run's best Dice starred."""
    fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for index, (label, curve) in enumerate(curves.items()):
        label = model_label(label)
        best = int(np.argmax(curve.dice))
        loss_ax.plot(curve.points, curve.loss, color=f"C{index}", label=label)
        dice_ax.plot(curve.points, curve.dice, color=f"C{index}",
                     label=f"{label} (best {curve.dice[best]:.3f}, {unit} {curve.points[best]})")
        dice_ax.plot(curve.points[best], curve.dice[best], "*", color=f"C{index}", markersize=14, markeredgecolor="k")
    loss_ax.set(xlabel=unit, ylabel="training loss", title="Training loss")
    dice_ax.set(xlabel=unit, ylabel=dice_label, title=f"{dice_label[0].upper()}{dice_label[1:]} (star = best {unit})")
    for ax in (loss_ax, dice_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def show_predictions(images, truths, predictions, titles=None, dice=None) -> Figure:
    """Rows of photo | truth | prediction | overlay | error map, titled with the row's Dice if given."""
    count = len(images)
    if count == 0:
        raise ValueError("show_predictions needs at least one image")
    fig, axes = photo_subplots(count, 5, figsize=(13, 2.7 * count + 0.6), squeeze=False)
    headings = ["photo", "true mask", "predicted mask", "prediction on photo", "errors"]
    for row, ax_row in enumerate(axes):
        image = as_image(images[row])
        truth = as_mask(truths[row], image)
        predicted = (as_mask(predictions[row], image) > 0.5).astype(np.uint8)
        pictures = [image, mask_to_rgb(truth), mask_to_rgb(predicted), overlay_mask(image, predicted),
                    error_map(predicted, truth)]
        for ax, picture, heading in zip(ax_row, pictures, headings):
            ax.imshow(picture)
            clean_axis(ax)
            if row == 0:
                ax.set_title(heading)
        name = titles[row] if titles else f"image {row}"
        ax_row[0].set_ylabel(name if dice is None else f"{name}\nDice {dice[row]:.3f}", fontsize=9)
    fig.legend(handles=error_legend_handles(), loc="outside lower center", ncol=5, frameon=False, fontsize=9)
    return fig


def display_name(key: str) -> str:
    """A per-image score's key as a reader says it, for axis labels:
    'dice_original' -> 'Dice at original resolution', 'dice' -> 'Dice'."""
    words = key.split("_")
    metric = {"dice": "Dice", "iou": "IoU"}.get(words[0], words[0])
    where = {"original": "at original resolution"}
    return " ".join([metric, *(where.get(word, word) for word in words[1:])])


def plot_dice_histogram(per_image: dict[str, list[dict]], key: str = "dice") -> Figure:
    """Overlaid histograms of per-image scores, one per model, means dashed."""
    scores = {model: np.array([row[key] for row in rows], float) for model, rows in per_image.items()}
    lowest = min(values.min() for values in scores.values())
    bins = np.linspace(min(lowest, 0.9), 1, 31)
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for index, (model, values) in enumerate(scores.items()):
        ax.hist(values, bins=bins, alpha=0.45, color=f"C{index}", label=f"{model_label(model)} (mean {values.mean():.3f})")
        ax.axvline(values.mean(), color=f"C{index}", linestyle="--")
    ax.set(xlabel=f"{display_name(key)} per image (dashed: mean)", ylabel="images",
           title=f"{display_name(key)} per image")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left")
    return fig


def plot_threshold_sweep(thresholds, scores: dict[str, list[float]], ylabel: str = "Dice") -> Figure:
    """Score against decision threshold per model, the best threshold starred; `ylabel` says which
    split and how many photos the scores come from."""
    thresholds = to_numpy(thresholds).astype(float)
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for index, (model, values) in enumerate(scores.items()):
        values = np.asarray(values, float)
        best = int(np.argmax(values))
        ax.plot(thresholds, values, color=f"C{index}", marker=".",
                label=f"{model_label(model)} (best {values[best]:.3f} at {thresholds[best]:.2f})")
        ax.plot(thresholds[best], values[best], "*", color=f"C{index}", markersize=14, markeredgecolor="k")
    ax.axvline(0.5, color="0.5", linestyle=":", label="default threshold 0.5")
    ax.set(xlabel="threshold on the predicted probability", ylabel=ylabel, title="Dice against threshold")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_speed_comparison(rows: list[dict], value_keys=("images_per_second",), label_key: str = "label",
                          value_labels: dict[str, str] | None = None) -> Figure:
    """Horizontal bars of images per second for each setting, one bar per measurement in value_keys,
    each labelled with three significant digits (0.914 and 4.7 stay apart).

    Args:
        value_labels: legend text per key; by default the key without `_images_per_second`.
    """
    labels = [model_label(str(row[label_key])) for row in rows]
    value_labels = value_labels or {}
    height = 0.8 / len(value_keys)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows) * len(value_keys) ** 0.5), layout="constrained")
    for index, key in enumerate(value_keys):
        positions = np.arange(len(rows)) + (index - (len(value_keys) - 1) / 2) * height
        values = [row[key] for row in rows]
        bars = ax.barh(positions, values, height=height, color=f"C{index}",
                       label=value_labels.get(key, key.removesuffix("_images_per_second").replace("_", " ")))
        ax.bar_label(bars, labels=[f"{value:.3g}" for value in values], padding=3, fontsize=8)
    ax.set_yticks(np.arange(len(rows)), labels)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.margins(x=0.12)
    ax.set(xlabel="images per second (higher is faster)", title="Speed")
    if len(value_keys) > 1:
        fig.legend(loc="outside lower center", ncol=len(value_keys), frameon=False)
    return fig


def plot_gradient_norms(norms: dict[str, list[float]], xlabel: str = "layer (input side first)") -> Figure:
    """Gradient norm of each layer's weights, one line per network, on a log scale."""
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    for index, (label, values) in enumerate(norms.items()):
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", color=f"C{index}", label=label)
    ax.set(yscale="log", xlabel=xlabel, ylabel="gradient norm of the layer's weights",
           title="Gradient norm per layer, one backward pass")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def plot_lr_range_test(lrs, losses, chosen: float | None = None) -> Figure:
    """Training loss against a learning rate that grows every step (log scale), the chosen peak marked."""
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ax.plot(to_numpy(lrs), to_numpy(losses), marker=".")
    if chosen is not None:
        ax.axvline(chosen, color="C1", linestyle="--", label=f"peak learning rate of the profile ({chosen:g})")
        ax.legend()
    ax.set(xscale="log", xlabel="learning rate (grows every step)", ylabel="training loss (smoothed)",
           title="Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    return fig


def format_cell(value) -> str:
    """Floats to 3 decimals, whole numbers with thousands separators (1,080,929), the rest as text."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"{value:,}"
    return "" if value is None else str(value).replace("|", "\\|")


def results_table(rows: list[dict], columns) -> str:
    """A Markdown table of rows; floats to 3 decimals, whole numbers with thousands separators,
    numeric columns right-aligned.

    Args:
        columns: keys to show, in order, or a {key: heading} dict to rename them.
    """
    headings = dict(columns) if isinstance(columns, dict) else {key: key for key in columns}
    numeric = {key: all(isinstance(row.get(key), (int, float, np.number)) for row in rows) for key in headings}
    lines = ["| " + " | ".join(headings.values()) + " |",
             "|" + "|".join("---:" if numeric[key] and rows else "---" for key in headings) + "|"]
    lines += ["| " + " | ".join(format_cell(row.get(key)) for key in headings) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(fig: Figure, name: str, folder: str | Path | None = None) -> Path:
    """Write fig to <folder or reports/figures>/<name>.png and return the path."""
    name = name.removesuffix(".png")
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"figure name {name!r} must be a plain file name like '00_samples'; use folder= for the place")
    folder = Path(folder) if folder is not None else paths.figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def png_base64(fig: Figure) -> str:
    """The figure as a PNG, base64-encoded as Jupyter stores images, drawn as Jupyter draws it."""
    return encoded(fig, "png")


def encoded(fig: Figure, image_format: str, **savefig_kwargs) -> str:
    """The figure in `image_format`, base64-encoded as Jupyter stores images, drawn as Jupyter draws it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format, bbox_inches="tight", **savefig_kwargs)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def stored_picture(fig: Figure) -> tuple[str, str]:
    """(mime type, base64 data) of the picture a notebook stores for `fig`: a PNG, or for a
    PhotoFigure the smaller of its JPEG (PHOTO_JPEG) and its PNG."""
    png = ("image/png", png_base64(fig))
    if not isinstance(fig, PhotoFigure):
        return png
    jpeg = ("image/jpeg", encoded(fig, "jpeg", pil_kwargs=PHOTO_JPEG))
    return min(jpeg, png, key=lambda picture: len(picture[1]))


HEADLESS = "LABKIT_HEADLESS"  # set where notebooks run with no one to move a slider: make lab, nbval, grading


def headless() -> bool:
    """True when `LABKIT_HEADLESS` says that no one watches this kernel (a runner executes it)."""
    return os.environ.get(HEADLESS, "").strip().lower() not in ("", "0", "false", "no")


def figure_sliders(draw: Callable[..., Figure], **sliders) -> None:
    """Show `draw(**values)` under sliders that redraw it whenever one moves (`ipywidgets.interact`
    for a function that returns a Figure).

    In a headless kernel (`headless()`) only the first picture is shown, without a widget: a live
    widget's messages can leave a notebook runner waiting for its whole time limit (nbclient
    issue 312), and no one is there to move it.

    The cell's output carries, next to the widget, the first picture (`stored_picture`: PNG, or
    JPEG for photos). JupyterLab shows the widget once the notebook is trusted (its cells run) and
    the picture before, when it shows only safe outputs; rendered copies (GitHub, nbviewer) show
    the picture too.
    The first picture is drawn here, outside the widget, so an error in `draw` fails the cell.

    Args:
        draw: takes one keyword argument per slider and returns a new Figure, which is shown once
            and closed.
        sliders: the widgets, by `draw`'s argument name, e.g. `index=ipywidgets.IntSlider(0, max=9)`.
    """
    import ipywidgets
    from IPython.display import display

    first = draw(**{name: slider.value for name, slider in sliders.items()})
    picture = dict([stored_picture(first)])
    plt.close(first)
    if headless():
        display({**picture, "text/plain": "(the first picture; its sliders need a live Jupyter session)"}, raw=True)
        return

    def show(**values) -> None:
        fig = draw(**values)
        display(fig)
        plt.close(fig)  # shown once above; an open figure would be drawn a second time

    view = ipywidgets.interactive(show, **sliders)
    display({**view._repr_mimebundle_(), **picture}, raw=True)
