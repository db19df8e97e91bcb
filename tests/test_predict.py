import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn

from labkit import predict
from labkit.checkpoint import make_checkpoint, save_checkpoint
from labkit.models import build_model
from labkit.predict import cutout, find_images, output_stems, overlay, predict_files, predict_probability

from fakes import ConstantLogit


class LeftHalfIsPet(nn.Module):
    """Positive logits on the left half of its input, negative on the right."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # predict_logits finds the device from a parameter

    def forward(self, images):
        logits = torch.full((images.shape[0], 1, *images.shape[2:]), -10.0)
        logits[..., : images.shape[-1] // 2] = 10.0
        return logits


def save_photo(path, mode="RGB", size=(53, 37), image_format=None):
    """A random photo of (width, height) `size` in `mode`, saved to `path`."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=image_format)
    return path


@pytest.fixture
def tiny_unet():
    torch.manual_seed(0)
    return build_model("unet", base_width=4).eval()


@pytest.mark.parametrize("name, mode, image_format", [
    ("rgb.jpg", "RGB", None), ("rgba.png", "RGBA", None), ("gray.png", "L", None),
    ("palette.gif", "P", None), ("cmyk.jpg", "CMYK", None), ("png_named.jpg", "RGB", "PNG"),
])
def test_masks_come_back_at_the_photos_own_odd_size_for_every_mode(tiny_unet, tmp_path, name, mode, image_format):
    source = save_photo(tmp_path / name, mode, size=(53, 37), image_format=image_format)
    report = predict_files(tiny_unet, [source], tmp_path / "out", image_size=32, progress=False)
    assert report.failed == []
    outputs = report.written[0]
    for kind in ("mask", "overlay", "cutout"):
        assert Image.open(outputs[kind]).size == (53, 37)


def test_probability_has_the_photos_height_and_width(tiny_unet):
    photo = Image.new("RGB", (53, 37))
    probability = predict_probability(tiny_unet, photo, image_size=32)
    assert probability.shape == (37, 53) and probability.dtype == np.float32
    assert 0 <= probability.min() and probability.max() <= 1


def test_mask_png_is_grayscale_with_only_0_and_255(tmp_path):
    source = save_photo(tmp_path / "photo.png")
    report = predict_files(LeftHalfIsPet(), [source], tmp_path / "out", image_size=32, progress=False)
    mask = Image.open(report.written[0]["mask"])
    assert mask.mode == "L" and set(np.unique(np.array(mask))) == {0, 255}


def test_prediction_follows_the_model_back_at_original_size(tmp_path):
    source = save_photo(tmp_path / "photo.png", size=(64, 40))
    report = predict_files(LeftHalfIsPet(), [source], tmp_path / "out", image_size=32, progress=False)
    mask = np.array(Image.open(report.written[0]["mask"]))
    assert (mask[:, :32] == 255).all() and (mask[:, 32:] == 0).all()
    assert report.written[0]["pet_fraction"] == pytest.approx(0.5)


def test_cutout_is_transparent_exactly_where_the_mask_is_background(tmp_path):
    source = save_photo(tmp_path / "photo.png", size=(64, 40))
    report = predict_files(LeftHalfIsPet(), [source], tmp_path / "out", image_size=32, progress=False)
    mask = np.array(Image.open(report.written[0]["mask"]))
    cut = Image.open(report.written[0]["cutout"])
    assert cut.mode == "RGBA"
    np.testing.assert_array_equal(np.array(cut)[..., 3] == 0, mask == 0)


def test_overlay_tints_only_the_pet():
    photo = Image.new("RGB", (4, 2), (0, 0, 0))
    mask = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)
    pixels = np.array(overlay(photo, mask, color=(200, 100, 0), alpha=0.5))
    assert (pixels[mask] == [100, 50, 0]).all() and (pixels[~mask] == 0).all()


def test_overlay_and_cutout_refuse_a_mask_of_another_size():
    with pytest.raises(ValueError, match="does not match"):
        cutout(Image.new("RGB", (4, 2)), np.zeros((4, 2), dtype=bool))


def test_unreadable_file_is_reported_and_the_others_still_complete(tmp_path):
    good = save_photo(tmp_path / "good.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    report = predict_files(ConstantLogit(1.0), [broken, good], tmp_path / "out", image_size=32, progress=False)
    assert [path for path, _ in report.failed] == [broken]
    assert "\n" not in report.failed[0][1] and "broken.jpg" in report.failed[0][1]
    assert [row["source"] for row in report.written] == [good]
    assert report.written[0]["mask"].is_file()


def test_folders_list_readable_extensions_and_skip_hidden_and_appledouble_files(tmp_path):
    for name in ("b.jpg", "a.PNG", "._b.jpg", ".hidden.jpg", "notes.mat", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "subfolder.jpg").mkdir()
    assert find_images([tmp_path]) == [tmp_path / "a.PNG", tmp_path / "b.jpg"]


def test_files_named_explicitly_are_kept_whatever_their_extension(tmp_path):
    odd = tmp_path / "scan.mat"
    odd.write_bytes(b"")
    assert find_images([odd, tmp_path / "scan.mat"]) == [odd]


def test_a_missing_input_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_photo.jpg"):
        find_images([tmp_path / "no_such_photo.jpg"])


def test_a_folder_without_photos_is_an_error_not_an_empty_success(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        predict_files(ConstantLogit(1.0), tmp_path, tmp_path / "out", progress=False)


def test_photos_with_the_same_name_do_not_overwrite_each_other(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    sources = [save_photo(tmp_path / "one" / "cat.png"), save_photo(tmp_path / "two" / "cat.png"),
               save_photo(tmp_path / "cat.jpg")]
    report = predict_files(ConstantLogit(1.0), sources, tmp_path / "out", image_size=32, progress=False)
    masks = [row["mask"] for row in report.written]
    assert len(set(masks)) == 3 and all(path.is_file() for path in masks)


def test_renamed_duplicates_never_take_another_photos_name():
    stems = output_stems([Path("a/cat.png"), Path("b/cat.png"), Path("cat-2.png")])
    assert stems[0] == "cat" and stems[2] == "cat-2" and len({stem.lower() for stem in stems}) == 3


@pytest.mark.parametrize("logit, expected_fraction", [(3.0, 1.0), (-3.0, 0.0)])
def test_constant_logit_gives_all_pet_or_no_pet(tmp_path, logit, expected_fraction):
    source = save_photo(tmp_path / "photo.png")
    report = predict_files(ConstantLogit(logit), [source], tmp_path / "out", image_size=32, progress=False)
    assert report.written[0]["pet_fraction"] == expected_fraction


def test_threshold_decides_which_probabilities_count_as_pet(tmp_path):
    source = save_photo(tmp_path / "photo.png")
    # sigmoid(1) is about 0.73: pet at threshold 0.5, background at threshold 0.8.
    low = predict_files(ConstantLogit(1.0), [source], tmp_path / "low", threshold=0.5, image_size=32, progress=False)
    high = predict_files(ConstantLogit(1.0), [source], tmp_path / "high", threshold=0.8, image_size=32, progress=False)
    assert low.written[0]["pet_fraction"] == 1.0 and high.written[0]["pet_fraction"] == 0.0


def test_prediction_restores_the_models_training_mode(tiny_unet, tmp_path):
    source = save_photo(tmp_path / "photo.png")
    tiny_unet.train()
    predict_files(tiny_unet, [source], tmp_path / "out", image_size=32, tta=True, progress=False)
    assert tiny_unet.training


def test_a_checkpoint_path_is_loaded_with_its_training_size(tiny_unet, tmp_path, monkeypatch):
    sizes = []
    resize = predict.data.resize_photo
    monkeypatch.setattr(predict.data, "resize_photo", lambda image, size: sizes.append(size) or resize(image, size))
    checkpoint = make_checkpoint("unet", {"base_width": 4}, tiny_unet, config={"image_size": 32})
    path = save_checkpoint(checkpoint, tmp_path / "best.pt")
    source = save_photo(tmp_path / "photo.png", size=(53, 37))
    report = predict_files(path, [source], tmp_path / "out", device="cpu", progress=False)
    expected = predict_probability(tiny_unet, Image.open(source), image_size=32) > 0.5
    np.testing.assert_array_equal(np.array(Image.open(report.written[0]["mask"])) == 255, expected)
    assert sizes == [32, 32]


def test_phone_photo_is_predicted_as_displayed_by_its_exif_orientation(tmp_path):
    # Stored 53 wide and 37 high; EXIF orientation 6 asks viewers to turn it 90 degrees clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    source = tmp_path / "phone.jpg"
    Image.open(save_photo(tmp_path / "stored.png")).save(source, exif=exif)
    report = predict_files(LeftHalfIsPet(), [source], tmp_path / "out", image_size=32, progress=False)
    outputs = report.written[0]
    assert all(Image.open(outputs[kind]).size == (37, 53) for kind in ("mask", "overlay", "cutout"))
    pet = np.array(Image.open(outputs["mask"])) == 255  # (53, 37): the left half as displayed
    assert pet[:, :16].all() and not pet[:, 21:].any()
    with Image.open(source) as stored:
        displayed = np.array(ImageOps.exif_transpose(stored).convert("RGB"))
    np.testing.assert_array_equal(np.array(Image.open(outputs["cutout"]))[..., :3][pet], displayed[pet])


# ---------------------------------------------------------------- faults caused for real


@pytest.fixture
def tiny_checkpoint(tiny_unet, tmp_path):
    return save_checkpoint(make_checkpoint("unet", {"base_width": 4}, tiny_unet, config={"image_size": 32}),
                           tmp_path / "tiny.pt")


def run_predict(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labkit", "predict", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_named_pipe_among_the_photos_is_called_one_not_a_missing_download(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    report = predict_files(ConstantLogit(1.0), [fifo], tmp_path / "out", image_size=32, progress=False)
    reason = report.failed[0][1]
    assert "x.jpg is a named pipe (FIFO), not an image file" in reason and "download" not in reason


def test_ctrl_c_while_writing_leaves_only_whole_pictures(tiny_checkpoint, tmp_path):
    """Ctrl-C (SIGINT) the moment an overlay starts being written, while PNG encoding of a large
    noisy photo takes a while: before, 3 of 3 tries left a truncated PNG."""
    for index in range(3):
        save_photo(tmp_path / f"photo{index}.png", size=(2400, 1800))
    output = tmp_path / "out"
    process = run_predict(*(str(tmp_path / f"photo{index}.png") for index in range(3)), "--checkpoint",
                          str(tiny_checkpoint), "--output", str(output))
    while process.poll() is None and not any("_overlay.png" in path.name for path in output.glob("*")):
        time.sleep(0.001)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, process.stderr.read()
    assert not list(output.glob("*.tmp"))
    for path in output.glob("*.png"):
        with Image.open(path) as picture:
            picture.load()  # raises on a truncated file


def test_peak_memory_of_a_huge_photo_is_a_small_multiple_of_its_pixels(tiny_checkpoint, tmp_path):
    """A 6000 x 6000 PNG of a flat colour is a few kB on disk. Predicting it took about 64 bytes
    a pixel at the peak (the issue measured 53 at 9,800 x 9,800): float copies of the whole photo.
    Now the photo is held once (PIL keeps 4 bytes a pixel), with one float and one bool a pixel
    for the mask, and one output picture at a time: about 9 bytes a pixel above a small photo's peak."""
    side = 6000
    Image.new("RGB", (side, side), (200, 120, 40)).save(tmp_path / "huge.png")
    Image.new("RGB", (64, 64), (200, 120, 40)).save(tmp_path / "small.png")
    peaks = {}
    for name in ("small", "huge"):
        process = run_predict(str(tmp_path / f"{name}.png"), "--checkpoint", str(tiny_checkpoint), "--output",
                              str(tmp_path / "out"))
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak resident memory
        assert status == 0, process.stderr.read()
        peaks[name] = usage.ru_maxrss * 1024  # kB on Linux
    assert (peaks["huge"] - peaks["small"]) / side**2 < 16
