"""The staircase figure: the crop is where two masks of a photo disagree most."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labkit.evaluate import mask_at_size
from labkit.staircase import disagreement_window, plot_upsampling_orders


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_window_lands_where_the_masks_differ_most():
    first, second = np.zeros((40, 60), bool), np.zeros((40, 60), bool)
    second[30:34, 50:55] = True  # 20 pixels differ here
    second[2, 2] = True  # and one far away
    rows, columns = disagreement_window(first, second, 8)
    assert rows.stop - rows.start == 8 and columns.stop - columns.start == 8
    assert rows.start <= 30 and rows.stop >= 34 and columns.start <= 50 and columns.stop >= 55


def test_a_window_larger_than_the_photo_is_the_whole_photo():
    assert disagreement_window(np.zeros((5, 7)), np.ones((5, 7)), 20) == (slice(0, 5), slice(0, 7))


def test_the_window_refuses_what_is_not_a_pair_of_masks():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        disagreement_window(np.zeros((2, 5, 7)), np.zeros((2, 5, 7)), 3)
    with pytest.raises(ValueError, match="side"):
        disagreement_window(np.zeros((5, 7)), np.zeros((5, 7)), 0)


def test_a_disc_enlarged_as_a_mask_shows_its_blocks_in_the_crop():
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    logits = (3.0 - ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).sqrt())[None] * 4  # a disc, 8 x 8 at the network's size
    masks = {order: mask_at_size(logits, (64, 64), order).numpy() for order in ("mask", "logits")}
    window = disagreement_window(masks["mask"], masks["logits"], 24)
    photo = np.full((64, 64, 3), 128, np.uint8)
    fig = plot_upsampling_orders(photo, masks, window)
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes[1:]] == ["mask", "logits"]
    assert (masks["mask"][window] != masks["logits"][window]).sum() > 0
    assert fig.axes[1].images[0].get_array().shape == (24, 24, 3)
