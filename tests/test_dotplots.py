"""Dot-and-whisker charts: points with error bars, never bars whose length reads as the score."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from labkit import dotplots

PER_IMAGE = {
    "unet": [{"breed": "pug", "species": "dog", "dice": 0.6}, {"breed": "pug", "species": "dog", "dice": 0.8},
             {"breed": "Bengal", "species": "cat", "dice": 0.9}, {"breed": "Bengal", "species": "cat", "dice": 0.94}],
    "resnet34_unet": [{"breed": "pug", "species": "dog", "dice": 0.85}, {"breed": "pug", "species": "dog", "dice": 0.75},
                      {"breed": "Bengal", "species": "cat", "dice": 0.8}, {"breed": "Bengal", "species": "cat", "dice": 0.9}],
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bars(ax) -> list:
    return [patch for patch in ax.patches if isinstance(patch, Rectangle) and patch.get_width() > 0]


def test_per_breed_draws_a_point_per_model_and_breed_at_its_mean_with_no_bars():
    fig = dotplots.plot_per_breed(PER_IMAGE)
    ax = fig.axes[0]
    assert not bars(ax)
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(points) == 2
    unet_means = sorted(points[0].get_xdata())
    assert unet_means == pytest.approx([0.7, 0.92])
    assert [label.get_text() for label in ax.get_yticklabels()] == ["pug (dog)", "Bengal (cat)"]  # easiest on top


def test_per_breed_zooms_the_axis_to_the_points_and_their_error_bars():
    low, high = dotplots.plot_per_breed(PER_IMAGE).axes[0].get_xlim()
    assert 0.5 < low < 0.6 and 0.94 < high <= 1.0


def test_the_summary_draws_a_labelled_point_per_model_and_setting():
    means = {"unet": {"plain": 0.84, "TTA": 0.845}, "resnet34_unet": {"plain": 0.79, "TTA": 0.80}}
    errors = {"unet": {"plain": 0.01, "TTA": 0.01}, "resnet34_unet": {"plain": 0.02, "TTA": 0.02}}
    ax = dotplots.plot_score_summary(means, errors, title="Test Dice").axes[0]
    assert not bars(ax)
    values = sorted(np.concatenate([line.get_ydata() for line in ax.lines if line.get_marker() == "o"]))
    assert values == pytest.approx([0.79, 0.80, 0.84, 0.845])
    assert {text.get_text() for text in ax.texts} == {"0.840", "0.845", "0.790", "0.800"}
