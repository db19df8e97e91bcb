"""The U-Net drawn as its paper draws it: encoder down the left, decoder up the right, skips across.

Each box is labelled with the shape its block outputs, taken from `models.summary.layer_shapes`,
so the drawing and the shape table a notebook prints come from the same forward pass.
"""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

ENCODER = ("input_block", "down1", "down2", "down3", "down4")  # levels 0 (full size) to 4 (the bottleneck)
DECODER = ("up4", "up3", "up2", "up1")  # levels 0 to 3, the order their outputs climb back in
ARROWS = {"down": ("C0", "2x2 max-pool, then DoubleConv"),
          "up": ("C1", "upsample to the skip's size, concatenate the skip, DoubleConv"),
          "skip": ("0.45", "skip connection: the encoder's map, concatenated")}
BOX_WIDTH, BOX_HEIGHT = 2.3, 0.62


def shape_label(shape: tuple[int, ...]) -> str:
    """(1, 64, 256, 256) -> '64 × 256 × 256': channels, height and width of one image."""
    return " × ".join(str(size) for size in shape[1:])


def plot_unet_diagram(rows: list[dict]) -> Figure:
    """A U-Net diagram whose boxes carry the output shape of each block.

    Args:
        rows: `layer_shapes(unet, size)` of a labkit (or a student's) UNet: rows named input_block,
            down1 to down4, up1 to up4 and output_conv, each with its `output_shape`.
    """
    shapes = {row["name"]: tuple(row["output_shape"]) for row in rows}
    missing = [name for name in (*ENCODER, *DECODER, "output_conv") if name not in shapes]
    if missing:
        raise ValueError(f"the rows lack the blocks {missing}; pass layer_shapes(UNet(...)) of a whole UNet")
    fig, ax = plt.subplots(figsize=(10, 5.6), layout="constrained")
    centres = {}
    for level, name in enumerate(ENCODER):
        centres[name] = (1.4 * level if level < 4 else 6.0, -level)
    for level, name in enumerate(DECODER):
        centres[name] = (12.0 - 1.4 * level, -level)
    centres["output_conv"] = (15.0, 0)
    for name, (x, y) in centres.items():
        colour = "#dbe8f6" if name in ENCODER else "#fbe3cf" if name in DECODER else "#e6e6e6"
        ax.add_patch(FancyBboxPatch((x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT,
                                    boxstyle="round,pad=0.04", facecolor=colour, edgecolor="0.3"))
        ax.text(x, y + 0.12, name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x, y - 0.14, shape_label(shapes[name]), ha="center", va="center", fontsize=8.5)
    path = [*ENCODER, *reversed(DECODER)]
    for start, end in zip(path, path[1:]):
        kind = "down" if end in ENCODER else "up"
        arrow(ax, centres[start], centres[end], ARROWS[kind][0], vertical=True)
    for encoder, decoder in zip(ENCODER, DECODER):
        arrow(ax, centres[encoder], centres[decoder], ARROWS["skip"][0], dashed=True)
    arrow(ax, centres["up4"], centres["output_conv"], "0.3")
    ax.text(centres["output_conv"][0], 0.55, "1x1 conv: logits", ha="center", fontsize=8.5)
    ax.text(centres["input_block"][0], 0.55, "photo in", ha="center", fontsize=8.5)
    ax.text(centres["down4"][0], -4.55, "the bottleneck", ha="center", fontsize=8.5, style="italic")
    for index, (colour, meaning) in enumerate(ARROWS.values()):
        ax.plot([0.2, 0.9], [-5.0 - 0.35 * index] * 2, color=colour, linewidth=2, linestyle="--" if index == 2 else "-")
        ax.text(1.1, -5.0 - 0.35 * index, meaning, va="center", fontsize=8.5)
    ax.set(xlim=(-1.5, 16.5), ylim=(-5.9, 0.9), title="The UNet: output shape of each block (C × H × W)")
    ax.axis("off")
    return fig


def arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], colour: str,
          vertical: bool = False, dashed: bool = False) -> None:
    """An arrow between two boxes, leaving and entering at their edges."""
    (x0, y0), (x1, y1) = start, end
    if vertical:  # from the bottom or top of one box to the top or bottom of the next
        step = BOX_HEIGHT / 2 if y1 < y0 else -BOX_HEIGHT / 2
        start, end = (x0, y0 - step), (x1, y1 + step)
    else:
        start, end = (x0 + BOX_WIDTH / 2, y0), (x1 - BOX_WIDTH / 2, y1)
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 1.8,
                                                      "linestyle": "--" if dashed else "-"})
