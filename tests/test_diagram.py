"""The drawn U-Net: every block is a box that carries the shape the network itself produced."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from labkit import models
from labkit.diagram import plot_unet_diagram, shape_label
from labkit.models.summary import layer_shapes


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig) -> list[str]:
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def test_each_block_is_labelled_with_the_shape_its_forward_pass_printed():
    rows = layer_shapes(models.UNet(base_width=8), (64, 96))
    shown = texts(plot_unet_diagram(rows))
    for row in rows:
        assert row["name"] in shown and shape_label(row["output_shape"]) in shown, row["name"]
    assert "8 × 64 × 96" in shown and "64 × 4 × 6" in shown  # input_block at full size; the bottleneck, 16x smaller


def test_shapes_from_another_width_change_the_labels_not_the_drawing():
    with torch.device("meta"):
        wide = layer_shapes(models.UNet(), (256, 256))
    assert "1024 × 16 × 16" not in texts(plot_unet_diagram(wide))  # bilinear: the bottleneck is 16w / 2 wide
    assert "512 × 16 × 16" in texts(plot_unet_diagram(wide))


def test_rows_of_another_network_are_refused_with_the_missing_blocks_named():
    rows = layer_shapes(models.ResNet34UNet(), (64, 64))
    with pytest.raises(ValueError, match="input_block"):
        plot_unet_diagram(rows)
