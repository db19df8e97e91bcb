"""Figures: each function opens one figure with the expected panels; the pixel helpers colour correctly."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labkit import viz
from labkit.metrics import IGNORE_INDEX


@pytest.fixture(autouse=True)
def close_figures():
    """Close whatever a test opened, so figures never leak from one test into the next."""
    yield
    plt.close("all")


def photos(count: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def square_masks(count: int, size: int = 16) -> np.ndarray:
    masks = np.zeros((count, size, size), np.uint8)
    masks[:, 4:12, 4:12] = 1
    return masks


def history(dice: list[float]) -> list[dict]:
    return [{"epoch": epoch, "train_loss": 1.0 / epoch, "valid_dice": value} for epoch, value in enumerate(dice, 1)]


PER_IMAGE = {
    "unet": [{"breed": "pug", "species": "dog", "dice": 0.6}, {"breed": "pug", "species": "dog", "dice": 0.8},
             {"breed": "Bengal", "species": "cat", "dice": 0.9}],
    "resnet34_unet": [{"breed": "pug", "species": "dog", "dice": 0.85},
                      {"breed": "Bengal", "species": "cat", "dice": 0.95}],
}

PLOTS = {  # name -> (call, number of axes the figure should hold)
    "show_samples": (lambda: viz.show_samples(photos(6), square_masks(6), [f"photo {i}" for i in range(6)]), 6),
    "show_samples_without_masks": (lambda: viz.show_samples(photos(3), columns=2), 3),
    "show_trimap": (lambda: viz.show_trimap(photos(1)[0], square_masks(1)[0] + 1, square_masks(1)[0]), 3),
    "plot_size_distribution": (lambda: viz.plot_size_distribution([(300, 400), (500, 375), (200, 200)]), 2),
    "plot_foreground_fraction": (lambda: viz.plot_foreground_fraction([0.2, 0.5, 0.3], ["cat", "dog", "cat"]), 1),
    "plot_history": (lambda: viz.plot_history({"unet": history([0.5, 0.7]), "resnet": history([0.6, 0.8])}), 2),
    "show_predictions": (lambda: viz.show_predictions(photos(2), square_masks(2), square_masks(2), dice=[1, 1]), 10),
    "plot_dice_histogram": (lambda: viz.plot_dice_histogram(PER_IMAGE), 1),
    "plot_threshold_sweep": (lambda: viz.plot_threshold_sweep([0.3, 0.5, 0.7], {"unet": [0.8, 0.9, 0.85]}), 1),
    "plot_speed_comparison": (lambda: viz.plot_speed_comparison([{"label": "fp32", "images_per_second": 10.0}]), 1),
    "plot_gradient_norms": (lambda: viz.plot_gradient_norms({"plain": [1.0, 0.1], "residual": [1.0, 0.9]}), 1),
    "plot_lr_range_test": (lambda: viz.plot_lr_range_test([1e-4, 1e-3, 1e-2], [0.9, 0.7, 2.0], chosen=3e-3), 1),
}


@pytest.mark.parametrize("name", PLOTS)
def test_each_plot_opens_exactly_one_figure_with_the_expected_panels(name):
    call, axes_count = PLOTS[name]
    figure = call()
    assert isinstance(figure, matplotlib.figure.Figure)
    assert plt.get_fignums() == [figure.number]  # one figure, so a notebook shows it once
    assert len(figure.axes) == axes_count
    figure.canvas.draw()  # layout and legends must render without error
    plt.close(figure)
    assert plt.get_fignums() == []


def test_overlay_mask_keeps_shape_and_dtype():
    image, mask = photos(1)[0], square_masks(1)[0]
    overlaid = viz.overlay_mask(image, mask)
    assert overlaid.shape == image.shape
    assert overlaid.dtype == np.uint8


def test_overlay_mask_leaves_background_pixels_unchanged():
    image, mask = photos(1)[0], square_masks(1)[0]
    overlaid = viz.overlay_mask(image, mask)
    np.testing.assert_array_equal(overlaid[mask == 0], image[mask == 0])
    assert not np.array_equal(overlaid[mask == 1], image[mask == 1])


def test_overlay_mask_at_full_opacity_paints_pet_pixels_in_the_colour():
    image, mask = photos(1)[0], square_masks(1)[0]
    overlaid = viz.overlay_mask(image, mask, color=(10, 20, 30), alpha=1.0, outline=None)
    assert (overlaid[mask == 1] == (10, 20, 30)).all()


def test_overlay_mask_outlines_the_pet_inside_its_edge_in_a_colour_that_is_not_fur():
    image, mask = photos(1, 32)[0], square_masks(1, 32)[0]
    overlaid = viz.overlay_mask(image, mask)
    edge = viz.mask_outline(mask)
    assert edge.sum() == 4 * 8 - 4  # the 8 x 8 square's border pixels, all inside the mask
    assert (mask[edge] == 1).all()
    assert (overlaid[edge] == viz.OUTLINE_COLOUR).all()
    assert viz.PET_TINT[2] > max(viz.PET_TINT[:2])  # blue, not the orange of many coats


def test_overlay_mask_paints_ignored_pixels_grey():
    image = np.zeros((2, 2, 3), np.uint8)
    mask = np.array([[0, IGNORE_INDEX], [0, 0]], np.uint8)
    overlaid = viz.overlay_mask(image, mask, alpha=1.0)
    assert tuple(overlaid[0, 1]) == viz.IGNORE_COLOUR


def test_overlay_mask_accepts_channels_first_float_tensors():
    image = torch.ones(3, 8, 8)  # (3, H, W) in [0, 1], as a model sees it
    overlaid = viz.overlay_mask(image, torch.zeros(8, 8, dtype=torch.uint8))
    assert overlaid.shape == (8, 8, 3)
    assert (overlaid == 255).all()


def test_overlay_mask_rejects_a_mask_of_another_size():
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay_mask(photos(1)[0], np.zeros((5, 5), np.uint8))


def test_error_map_colours_each_of_the_four_cases():
    prediction = np.array([[1, 1], [0, 0]], np.uint8)
    truth = np.array([[1, 0], [1, 0]], np.uint8)
    picture = viz.error_map(prediction, truth)
    assert tuple(picture[0, 0]) == viz.ERROR_COLOURS["true positive"]
    assert tuple(picture[0, 1]) == viz.ERROR_COLOURS["false positive (extra pet)"]
    assert tuple(picture[1, 0]) == viz.ERROR_COLOURS["false negative (missed pet)"]
    assert tuple(picture[1, 1]) == viz.ERROR_COLOURS["true negative"]


def test_error_map_draws_ignored_truth_grey_whatever_the_prediction():
    prediction = np.array([[True, False]])
    truth = np.array([[IGNORE_INDEX, IGNORE_INDEX]], np.uint8)
    picture = viz.error_map(prediction, truth)
    assert (picture == viz.IGNORE_COLOUR).all()


def test_error_legend_has_one_entry_per_error_colour():
    labels = [handle.get_label() for handle in viz.error_legend_handles()]
    assert labels == list(viz.ERROR_COLOURS)


def test_show_predictions_puts_each_rows_dice_beside_it():
    figure = viz.show_predictions(photos(2), square_masks(2), square_masks(2), titles=["a", "b"], dice=[0.25, 0.5])
    labels = [figure.axes[row * 5].get_ylabel() for row in range(2)]
    assert labels == ["a\nDice 0.250", "b\nDice 0.500"]


def test_plot_history_stars_the_epoch_with_the_best_validation_dice():
    figure = viz.plot_history({"unet": history([0.5, 0.9, 0.7])})
    dice_panel = figure.axes[1]
    assert "best 0.900, epoch 2" in dice_panel.get_legend().get_texts()[0].get_text()
    star = [line for line in dice_panel.get_lines() if line.get_marker() == "*"][0]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([2], [0.9])


def test_plot_history_rejects_rows_without_validation_dice():
    with pytest.raises(ValueError, match="valid_dice"):
        viz.plot_history({"unet": [{"epoch": 1, "train_loss": 0.5}]})


def test_plot_history_can_count_steps_instead_of_epochs():
    rows = [{"step": step, "train_loss": 1.0 / step, "valid_dice": 0.1 * step} for step in (1, 2, 3)]
    figure = viz.plot_history({"unet": rows}, unit="step", dice_label="Dice on the same photos")
    assert figure.axes[0].get_xlabel() == "step"
    assert "UNet (best 0.300, step 3)" == figure.axes[1].get_legend().get_texts()[0].get_text()


def test_plot_speed_comparison_labels_small_speeds_with_their_decimals():
    rows = [{"label": "unet", "training_images_per_second": 0.914}, {"label": "resnet34_unet", "training_images_per_second": 4.7}]
    figure = viz.plot_speed_comparison(rows, value_keys=("training_images_per_second",))
    texts = sorted(text.get_text() for text in figure.axes[0].texts)
    assert texts == ["0.914", "4.7"]
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["UNet", "ResNet34-UNet"]


def test_plot_dice_histogram_reports_each_models_mean():
    figure = viz.plot_dice_histogram(PER_IMAGE)
    texts = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert texts == ["UNet (mean 0.767)", "ResNet34-UNet (mean 0.900)"]  # (0.6 + 0.8 + 0.9) / 3, (0.85 + 0.95) / 2


def test_plot_threshold_sweep_names_the_best_threshold():
    figure = viz.plot_threshold_sweep([0.3, 0.5, 0.7], {"unet": [0.8, 0.85, 0.9]}, ylabel="valid Dice (20 photos)")
    assert "best 0.900 at 0.70" in figure.axes[0].get_legend().get_texts()[0].get_text()
    assert figure.axes[0].get_ylabel() == "valid Dice (20 photos)"


def test_plot_speed_comparison_draws_one_bar_per_setting_and_measurement():
    rows = [{"label": "fp32", "train": 10.0, "inference": 30.0}, {"label": "bf16", "train": 20.0, "inference": 60.0}]
    figure = viz.plot_speed_comparison(rows, value_keys=("train", "inference"))
    widths = sorted(bar.get_width() for bar in figure.axes[0].patches)
    assert widths == [10.0, 20.0, 30.0, 60.0]


def test_results_table_formats_floats_to_three_decimals_under_the_given_headings():
    rows = [{"model": "unet", "dice": 0.91234, "epochs": 20}, {"model": "resnet34_unet", "dice": 0.95, "epochs": 8}]
    table = viz.results_table(rows, {"model": "model", "dice": "test Dice", "epochs": "epochs"})
    assert table.splitlines() == [
        "| model | test Dice | epochs |",
        "|---|---:|---:|",
        "| unet | 0.912 | 20 |",
        "| resnet34_unet | 0.950 | 8 |",
    ]


def test_results_table_accepts_a_list_of_columns_and_leaves_missing_values_blank():
    table = viz.results_table([{"model": "unet"}], ["model", "dice"])
    assert table.splitlines()[0] == "| model | dice |"
    assert table.splitlines()[2] == "| unet |  |"


def test_save_figure_writes_a_png_with_the_stable_name(tmp_path):
    figure, _ = plt.subplots()
    path = viz.save_figure(figure, "00_samples", folder=tmp_path / "figures")
    assert path == tmp_path / "figures" / "00_samples.png"
    assert path.read_bytes().startswith(b"\x89PNG")


def test_save_figure_defaults_to_the_project_figures_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    figure, _ = plt.subplots()
    assert viz.save_figure(figure, "03_curves_unet") == tmp_path / "reports" / "figures" / "03_curves_unet.png"


def test_save_figure_rejects_a_path_in_the_name(tmp_path):
    figure, _ = plt.subplots()
    with pytest.raises(ValueError, match="folder="):
        viz.save_figure(figure, "figures/00_samples", folder=tmp_path)


def test_a_float_photo_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.overlay_mask(np.full((4, 4, 3), 200.0), np.zeros((4, 4), np.uint8))


def test_plot_history_reads_the_dice_under_the_key_it_is_given():
    rows = [{"step": step, "train_loss": 1.0 / step, "batch_dice": 0.1 * step} for step in (1, 2)]
    figure = viz.plot_history({"unet": rows}, unit="step", dice_label="Dice on the same photos", dice_key="batch_dice")
    assert "UNet (best 0.200, step 2)" == figure.axes[1].get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="valid_dice"):
        viz.plot_history({"unet": rows}, unit="step")


def test_scores_at_original_resolution_are_labelled_in_words():
    assert viz.display_name("dice_original") == "Dice at original resolution"
    assert viz.display_name("dice") == "Dice" and viz.display_name("iou_original") == "IoU at original resolution"


def test_results_table_writes_whole_numbers_with_thousands_separators_right_aligned():
    table = viz.results_table([{"model": "unet", "parameters": 1080929, "epochs": 40, "pretrained": False}],
                              ["model", "parameters", "epochs", "pretrained"])
    assert table.splitlines()[1:] == ["|---|---:|---:|---:|", "| unet | 1,080,929 | 40 | False |"]


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False), (None, False)])
def test_headless_is_what_labkit_headless_says(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LABKIT_HEADLESS", raising=False)
    else:
        monkeypatch.setenv("LABKIT_HEADLESS", value)
    assert viz.headless() is expected


def test_a_headless_kernel_gets_the_first_picture_and_no_widget(monkeypatch):
    """No live widget where no one watches: its messages can keep a notebook runner waiting."""
    import ipywidgets

    shown = []
    monkeypatch.setenv("LABKIT_HEADLESS", "1")
    monkeypatch.setattr("IPython.display.display", lambda *objects, **options: shown.append((objects, options)))
    monkeypatch.setattr(ipywidgets, "interactive", lambda *args, **kwargs: pytest.fail("a widget was made"))
    viz.figure_sliders(lambda index: plt.subplots()[0], index=ipywidgets.IntSlider(3, max=9))
    [(objects, options)] = shown
    assert options == {"raw": True} and sorted(objects[0]) == ["image/png", "text/plain"]
    assert not plt.get_fignums()


def test_plot_history_draws_a_training_historys_epoch_records():
    from labkit.history import EpochRecord

    records = [EpochRecord(epoch=epoch, lr=1e-3, train_loss=1.0 / epoch, valid_dice=dice, valid_iou=0.5,
                           valid_dice_dataset=0.5, epoch_seconds=1.0, train_images_per_second=10.0)
               for epoch, dice in enumerate([0.4, 0.6, 0.5], start=1)]
    figure = viz.plot_history({"unet": records})
    loss, dice = (ax.get_lines()[0] for ax in figure.axes)
    assert list(loss.get_ydata()) == [1.0, 0.5, 1 / 3] and list(dice.get_ydata()) == [0.4, 0.6, 0.5]


def stored_bundle(fig) -> dict:
    """What a kernel after `store_photo_pictures` stores for `fig`, with the inline backend's PNG
    registered for every Figure as in a notebook."""
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter
    from IPython.core.pylabtools import select_figure_formats

    shell = SimpleNamespace(display_formatter=DisplayFormatter())  # a kernel's formatters, without a kernel
    select_figure_formats(shell, {"png"})
    viz.store_photo_pictures(shell)
    bundle, _ = shell.display_formatter.format(fig)
    return bundle


def test_a_notebook_stores_a_grid_of_real_photos_as_a_jpeg_under_half_the_png(shared_sample):
    """What `store_photo_pictures` is for: PNG was most of the committed notebooks' weight."""
    from labkit import data

    samples = data.read_split(shared_sample, "train")[:8]
    fig = viz.show_samples([np.asarray(data.load_rgb(sample.image_path)) for sample in samples])
    bundle = stored_bundle(fig)
    assert sorted(bundle) == ["image/jpeg", "text/plain"]
    assert len(bundle["image/jpeg"]) < len(viz.png_base64(fig)) / 2


def test_photos_enlarged_into_blocks_of_pixels_stay_png_where_jpeg_would_be_larger():
    blocks = np.kron(photos(4, size=8), np.ones((1, 16, 16, 1), np.uint8))  # 8x8 photos shown as 128x128
    fig = viz.show_samples(list(blocks))
    bundle = stored_bundle(fig)
    assert sorted(bundle) == ["image/png", "text/plain"]
    assert len(viz.encoded(fig, "jpeg", pil_kwargs=viz.PHOTO_JPEG)) > len(bundle["image/png"])


def test_showing_a_photo_figure_encodes_it_once_as_png_and_once_as_jpeg(monkeypatch):
    formats = []
    real_encoded = viz.encoded
    monkeypatch.setattr(viz, "encoded", lambda fig, image_format, **kwargs: (
        formats.append(image_format), real_encoded(fig, image_format, **kwargs))[1])
    stored_bundle(viz.show_samples(list(photos(4, size=32))))
    assert sorted(formats) == ["jpeg", "png"]


def test_charts_are_stored_as_png_after_setup():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert sorted(stored_bundle(fig)) == ["image/png", "text/plain"]
