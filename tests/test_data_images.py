"""labkit.data.images: photos of any format, trimaps to masks."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from labkit.data.images import IGNORE_INDEX, load_rgb, load_rgb_as_displayed, trimap_to_mask

from fake_pets import two_tone_photo

TRIMAP = np.array([[1, 2, 3]], dtype=np.uint8)  # pet, background, border


def test_border_pixels_count_as_pet_by_default():
    assert trimap_to_mask(TRIMAP).tolist() == [[1, 0, 1]]


def test_border_pixels_can_count_as_background():
    assert trimap_to_mask(TRIMAP, border="background").tolist() == [[1, 0, 0]]


def test_border_pixels_can_be_ignored():
    assert trimap_to_mask(TRIMAP, border="ignore").tolist() == [[1, 0, IGNORE_INDEX]]


def test_unknown_border_mode_is_rejected():
    with pytest.raises(ValueError, match="pet"):
        trimap_to_mask(TRIMAP, border="edge")


# ---------------------------------------------------------------- image quirks of the release


def save_rgba_png(photo, path):
    photo.convert("RGBA").save(path, "PNG")


def save_palette_gif(photo, path):
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(path, "GIF")


def save_transparent_palette_gif(photo, path):
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(path, "GIF", transparency=0)


def save_grayscale_jpeg(photo, path):
    photo.convert("L").save(path, "JPEG", quality=95)


def save_cmyk_jpeg(photo, path):
    photo.convert("CMYK").save(path, "JPEG", quality=95)


@pytest.mark.parametrize(
    "save, expected_mode",
    [
        (save_rgba_png, "RGB"),
        (save_palette_gif, "RGB"),
        (save_transparent_palette_gif, "RGB"),
        (save_grayscale_jpeg, "L"),
        (save_cmyk_jpeg, "RGB"),
    ],
)
def test_photos_of_any_format_named_jpg_load_as_rgb(tmp_path, save, expected_mode):
    photo = two_tone_photo(40, 30)
    path = tmp_path / "Tabby_1.jpg"
    save(photo, path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB" and loaded.size == (40, 30)
    # Grayscale files keep only luminance, so compare against the grey version of the photo.
    expected = np.asarray(photo.convert(expected_mode).convert("RGB"), dtype=float)
    assert np.abs(np.asarray(loaded, dtype=float) - expected).mean() < 8


def save_turned_jpeg(path):
    """53 wide and 37 high as stored; EXIF orientation 6 asks viewers to turn it 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    two_tone_photo(53, 37).save(path, "JPEG", quality=95, exif=exif)
    return path


def test_dataset_photos_keep_their_stored_pixel_grid_whatever_their_exif_orientation(tmp_path):
    # The trimaps were drawn on the stored grid; turning only the photo would misalign them.
    assert load_rgb(save_turned_jpeg(tmp_path / "Tabby_1.jpg")).size == (53, 37)


def test_user_photos_load_as_displayed_by_their_exif_orientation(tmp_path):
    path = save_turned_jpeg(tmp_path / "phone.jpg")
    with Image.open(path) as stored:
        expected = ImageOps.exif_transpose(stored).convert("RGB")
    loaded = load_rgb_as_displayed(path)
    assert loaded.size == (37, 53)
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(expected))


def test_shared_sample_unlisted_gif_named_jpg_loads_as_rgb(shared_sample):
    photo = load_rgb(shared_sample / "images" / "Abyssinian_34.jpg")
    assert photo.mode == "RGB"
