"""labkit.data: splits, image quirks, trimaps to masks, resizing, the decoded cache, dataset roots."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import labkit.data as data
from labkit.data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    load_rgb,
    load_split,
    normalize,
    read_split,
    resolve_root,
    to_tensors,
    trimap_to_mask,
)

# ---------------------------------------------------------------- fake datasets in the official layout


def two_tone_photo(width: int, height: int) -> Image.Image:
    """Left half orange, right half blue: flat colours survive GIF palettes and JPEG alike."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (230, 120, 30)
    pixels[:, width // 2 :] = (30, 60, 200)
    return Image.fromarray(pixels)


def pet_trimap(width: int, height: int) -> np.ndarray:
    """Background 2, a pet rectangle 1 in the middle, outlined by a border band 3."""
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 3
    trimap[height // 4 + 2 : 3 * height // 4 - 2, width // 4 + 2 : 3 * width // 4 - 2] = 1
    return trimap


def write_pet(root: Path, name: str, width: int = 40, height: int = 30) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    two_tone_photo(width, height).save(root / "images" / f"{name}.jpg", "JPEG", quality=95)
    Image.fromarray(pet_trimap(width, height)).save(root / "annotations" / "trimaps" / f"{name}.png")


def write_split_file(root: Path, filename: str, names: list[str]) -> Path:
    path = root / "annotations" / filename
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    path.write_text(header + "".join(f"{name} 1 1 1\n" for name in names))
    return path


def fake_dataset(root: Path, trainval_count: int = 23, test_count: int = 3) -> Path:
    """Photos of slightly different sizes so every resize path is exercised."""
    trainval = [f"Tabby_{index}" for index in range(trainval_count)]
    test = [f"Tabby_{index}" for index in range(trainval_count, trainval_count + test_count)]
    for offset, name in enumerate(trainval + test):
        write_pet(root, name, width=40 + offset, height=30 + offset % 5)
    write_split_file(root, "trainval.txt", trainval)
    write_split_file(root, "test.txt", test)
    return root


@pytest.fixture
def fake_root(tmp_path) -> Path:
    return fake_dataset(tmp_path / "pets")


def names(samples) -> list[str]:
    return [sample.name for sample in samples]


# ---------------------------------------------------------------- splits


def test_valid_is_every_tenth_line_of_trainval(fake_root):
    trainval = names(read_split(fake_root, "trainval"))
    assert names(read_split(fake_root, "valid")) == [trainval[0], trainval[10], trainval[20]]


def test_train_and_valid_are_disjoint_and_together_are_trainval(fake_root):
    train = names(read_split(fake_root, "train"))
    valid = names(read_split(fake_root, "valid"))
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(names(read_split(fake_root, "trainval")))


def test_test_split_reads_test_txt(fake_root):
    assert names(read_split(fake_root, "test")) == ["Tabby_23", "Tabby_24", "Tabby_25"]


def test_comment_and_blank_lines_are_skipped(fake_root):
    path = fake_root / "annotations" / "test.txt"
    path.write_text("# a comment\n\nTabby_23 1 1 1\n   \n#Tabby_24 1 1 1\nTabby_25 1 1 1\n")
    assert names(read_split(fake_root, "test")) == ["Tabby_23", "Tabby_25"]


def test_sample_fields_come_from_the_split_line(fake_root):
    write_pet(fake_root, "american_pit_bull_terrier_12")
    (fake_root / "annotations" / "test.txt").write_text("american_pit_bull_terrier_12 3 2 2\n")
    (sample,) = read_split(fake_root, "test")
    assert (sample.breed, sample.species, sample.class_id) == ("american_pit_bull_terrier", "dog", 3)
    assert sample.image_path == fake_root / "images" / "american_pit_bull_terrier_12.jpg"
    assert sample.trimap_path == fake_root / "annotations" / "trimaps" / "american_pit_bull_terrier_12.png"


def test_unknown_split_is_rejected_with_the_valid_choices(fake_root):
    with pytest.raises(ValueError, match="validation") as error:
        read_split(fake_root, "validation")
    assert all(split in str(error.value) for split in SPLITS)


def test_malformed_split_line_names_the_file_and_line(fake_root):
    (fake_root / "annotations" / "test.txt").write_text("Tabby_23 1 1 1\nTabby_24\n")
    with pytest.raises(ValueError, match=r"test\.txt, line 2"):
        read_split(fake_root, "test")


# ---------------------------------------------------------------- trimaps to masks

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


def test_stray_files_beside_the_photos_are_ignored(fake_root):
    (fake_root / "images" / "._Tabby_23.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    (fake_root / "images" / "Tabby_23.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    (fake_root / "annotations" / "trimaps" / "._Tabby_23.png").write_bytes(b"\x00\x05\x16\x07")
    arrays = load_split(fake_root, "test", size=16, progress=False)
    assert names(arrays.samples) == ["Tabby_23", "Tabby_24", "Tabby_25"]


def test_missing_photo_error_names_the_file_and_the_split_file(fake_root):
    (fake_root / "images" / "Tabby_24.jpg").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split(fake_root, "test", size=16, progress=False)
    assert "Tabby_24.jpg" in str(error.value) and "test.txt" in str(error.value)
    assert "download" in str(error.value)


def test_missing_trimap_error_names_the_file(fake_root):
    (fake_root / "annotations" / "trimaps" / "Tabby_24.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"Tabby_24\.png"):
        load_split(fake_root, "test", size=16, progress=False)


def test_unreadable_photo_error_names_the_file_and_the_split_file(fake_root):
    (fake_root / "images" / "Tabby_24.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError) as error:
        load_split(fake_root, "test", size=16, progress=False)
    assert "Tabby_24.jpg" in str(error.value) and "test.txt" in str(error.value)


def test_truncated_photo_error_names_the_file(fake_root):
    path = fake_root / "images" / "Tabby_24.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"Tabby_24\.jpg"):
        load_split(fake_root, "test", size=16, progress=False)


# ---------------------------------------------------------------- resizing


def test_resizing_keeps_each_original_height_and_width(fake_root):
    arrays = load_split(fake_root, "test", size=16, progress=False)
    # fake_dataset wrote test photo k (k = 23, 24, 25) at width 40 + k, height 30 + k % 5.
    assert arrays.original_sizes == [(30 + k % 5, 40 + k) for k in (23, 24, 25)]
    assert arrays.images.shape == (3, 16, 16, 3) and arrays.images.dtype == np.uint8
    assert arrays.trimaps.shape == (3, 16, 16) and arrays.trimaps.dtype == np.uint8


def test_trimaps_are_resized_nearest_so_they_keep_only_trimap_values(tmp_path):
    # 2x2 blocks of random trimap values: halving with nearest picks one pixel of each block,
    # while any blending filter would mix neighbouring blocks.
    blocks = np.random.default_rng(0).integers(1, 4, size=(32, 32), dtype=np.uint8)
    trimap = blocks.repeat(2, axis=0).repeat(2, axis=1)
    root = fake_dataset(tmp_path / "pets", trainval_count=1, test_count=1)
    Image.fromarray(trimap).save(root / "annotations" / "trimaps" / "Tabby_1.png")
    two_tone_photo(64, 64).save(root / "images" / "Tabby_1.jpg")
    arrays = load_split(root, "test", size=32, progress=False)
    np.testing.assert_array_equal(arrays.trimaps[0], blocks)


def test_masks_follow_the_border_mode(fake_root):
    arrays = load_split(fake_root, "test", size=16, progress=False)
    assert set(np.unique(arrays.masks())) <= {0, 1}
    assert set(np.unique(arrays.masks("ignore"))) == {0, 1, IGNORE_INDEX}


# ---------------------------------------------------------------- the decoded cache


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts photo decodes, to tell a cache hit from a rebuild."""
    calls = []
    original = data.load_rgb

    def counting_load_rgb(path):
        calls.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(data, "load_rgb", counting_load_rgb)
    return calls


def test_second_load_is_served_from_the_cache_without_decoding(fake_root, tmp_path, monkeypatch):
    first = load_split(fake_root, "train", size=16, cache_dir=tmp_path / "cache", progress=False)

    def fail(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(data, "load_rgb", fail)
    second = load_split(fake_root, "train", size=16, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.trimaps, first.trimaps)
    assert second.original_sizes == first.original_sizes and second.fingerprint == first.fingerprint


def test_cache_goes_to_labkit_cache_by_default(fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "elsewhere"))
    load_split(fake_root, "test", size=16, progress=False)
    assert list((tmp_path / "elsewhere").glob("*.npy"))


def test_cache_is_rebuilt_when_the_size_changes(fake_root, tmp_path, count_decodes):
    load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    arrays = load_split(fake_root, "test", size=24, cache_dir=tmp_path / "cache", progress=False)
    assert arrays.images.shape[1:3] == (24, 24)
    assert len(count_decodes) == 2 * len(arrays)


def test_cache_is_rebuilt_when_a_listed_file_changes(fake_root, tmp_path, count_decodes):
    first = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    Image.new("RGB", (40, 30), (0, 255, 0)).save(fake_root / "images" / "Tabby_24.jpg", "PNG")
    second = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert second.fingerprint != first.fingerprint
    assert len(count_decodes) == 2 * len(first)
    assert second.images[1, :, :, 1].min() > 240  # the new, green photo


def test_cache_is_rebuilt_when_the_file_list_changes(fake_root, tmp_path, count_decodes):
    load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    write_split_file(fake_root, "test.txt", ["Tabby_23", "Tabby_24"])
    arrays = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert names(arrays.samples) == ["Tabby_23", "Tabby_24"] and len(arrays.images) == 2
    assert len(count_decodes) == 3 + 2


def test_cache_is_not_shared_between_roots(fake_root, tmp_path):
    other_root = tmp_path / "other" / "pets"
    shutil.copytree(fake_root, other_root)
    Image.new("RGB", (40, 30), (0, 255, 0)).save(other_root / "images" / "Tabby_23.jpg", "JPEG")
    first = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    second = load_split(other_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert first.fingerprint != second.fingerprint
    assert not np.array_equal(first.images[0], second.images[0])


# ---------------------------------------------------------------- where the dataset is


def test_root_argument_wins_over_labkit_data(fake_root, tmp_path, monkeypatch):
    other = fake_dataset(tmp_path / "other", trainval_count=1, test_count=1)
    monkeypatch.setenv("LABKIT_DATA", str(other))
    assert resolve_root(fake_root) == fake_root


def test_labkit_data_is_used_without_an_argument(fake_root, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(fake_root))
    assert resolve_root() == fake_root


def test_missing_explicit_root_says_what_is_missing_and_how_to_fix_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        resolve_root(tmp_path / "nowhere")
    message = str(error.value)
    assert "trainval.txt" in message and "python -m labkit download" in message and "LABKIT_DATA" in message


def test_missing_labkit_data_root_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$LABKIT_DATA"):
        resolve_root()


def test_downloaded_dataset_in_the_project_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    fake_dataset(tmp_path / "data" / "oxford-iiit-pet", trainval_count=1, test_count=1)
    assert resolve_root() == tmp_path / "data" / "oxford-iiit-pet"


def test_synthetic_set_is_generated_once_when_no_dataset_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    generated = []

    def fake_make_synthetic(root):
        generated.append(root)
        fake_dataset(Path(root), trainval_count=1, test_count=1)
        (Path(root) / "SYNTHETIC.md").write_text("synthetic\n")
        return Path(root)

    monkeypatch.setattr(data, "make_synthetic", fake_make_synthetic)
    with pytest.warns(data.SyntheticDataWarning, match="synthetic"):
        first = resolve_root()
    with pytest.warns(data.SyntheticDataWarning, match="synthetic"):
        second = resolve_root()
    assert first == second == tmp_path / "data" / "synthetic"
    assert generated == [first] and data.is_synthetic(first)


def test_real_dataset_is_not_synthetic(fake_root):
    assert not data.is_synthetic(fake_root)


# ---------------------------------------------------------------- tensors


def test_uint8_and_float_images_normalize_alike():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(normalize(images), normalize(images.float() / 255))


def test_normalize_maps_the_imagenet_mean_to_zero_and_one_std_to_one():
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = torch.cat([mean, mean + std]).expand(2, 3, 4, 4)
    normalized = normalize(images)
    assert normalized.dtype == torch.float32
    torch.testing.assert_close(normalized[0], torch.zeros(3, 4, 4))
    torch.testing.assert_close(normalized[1], torch.ones(3, 4, 4))


def test_normalize_rejects_images_that_are_not_batched_rgb():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normalize(torch.zeros(3, 8, 8))


def test_to_tensors_puts_channels_first_and_keeps_uint8(fake_root):
    arrays = load_split(fake_root, "test", size=16, progress=False)
    images, masks = to_tensors(arrays, border="ignore")
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8
    assert masks.shape == (3, 16, 16) and masks.dtype == torch.uint8
    np.testing.assert_array_equal(images[1, 2].numpy(), arrays.images[1, :, :, 2])
    np.testing.assert_array_equal(masks.numpy(), arrays.masks("ignore"))


def test_pet_segmentation_dataset_returns_a_float_image_and_a_binary_mask(fake_root):
    from torchvision import tv_tensors

    image, mask = data.PetSegmentation(fake_root, "test", size=16)[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert isinstance(mask, tv_tensors.Mask) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) == {0, 1}


# ---------------------------------------------------------------- the real photo sample


@pytest.fixture(scope="session")
def shared_test_split(shared_sample, tmp_path_factory):
    """The sample's test split at the default size, decoded once for the whole session."""
    return load_split(shared_sample, "test", cache_dir=tmp_path_factory.mktemp("shared_cache"), progress=False)


def test_shared_sample_split_sizes(shared_sample):
    sizes = {split: len(read_split(shared_sample, split)) for split in SPLITS}
    assert sizes == {"trainval": 200, "train": 180, "valid": 20, "test": 101}


def test_shared_sample_test_split_loads_with_its_rgba_png(shared_test_split):
    assert "Abyssinian_5" in names(shared_test_split.samples)
    assert shared_test_split.images.shape == (101, 256, 256, 3)
    assert shared_test_split.images.dtype == np.uint8
    assert set(np.unique(shared_test_split.trimaps)) == {1, 2, 3}


def test_shared_sample_unlisted_gif_named_jpg_loads_as_rgb(shared_sample):
    photo = load_rgb(shared_sample / "images" / "Abyssinian_34.jpg")
    assert photo.mode == "RGB"


def test_shared_sample_original_sizes_match_the_photos(shared_test_split):
    index = names(shared_test_split.samples).index("Abyssinian_5")
    with Image.open(shared_test_split.samples[index].image_path) as photo:
        width, height = photo.size
    assert shared_test_split.original_sizes[index] == (height, width)


def test_shared_sample_train_split_at_a_small_size(shared_sample, tmp_path):
    arrays = load_split(shared_sample, "train", size=64, cache_dir=tmp_path, progress=False)
    assert arrays.images.shape == (180, 64, 64, 3) and len(arrays) == 180
    assert not {os.fspath(p) for p in tmp_path.glob("*.tmp")}  # atomic writes leave no temporaries


# ---------------------------------------------------------------- the synthetic stand-in


def test_synthetic_set_loads_like_the_real_one(synthetic_root):
    arrays = load_split(synthetic_root, "train", size=32, progress=False)
    assert data.is_synthetic(synthetic_root)
    assert arrays.images.shape == (len(read_split(synthetic_root, "train")), 32, 32, 3)
    assert set(np.unique(arrays.trimaps)) == {1, 2, 3}
