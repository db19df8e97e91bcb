"""labkit.data.cache: decoding a split, resizing, the cache on disk and `python -m labkit cache`."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit.data import images as image_module
from labkit.cli import main
from labkit.data.cache import clear_cache, format_size, load_split
from labkit.data.images import IGNORE_INDEX
from labkit.data.roots import is_synthetic
from labkit.data.splits import read_split

from filesystems import remount_read_only, tmpfs
from fake_pets import fake_dataset, fake_root, names, pet_trimap, two_tone_photo, write_split_file  # noqa: F401

# ---------------------------------------------------------------- decoding a split


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


def test_a_named_pipe_in_place_of_a_photo_is_called_one_not_missing(fake_root):
    photo = fake_root / "images" / "Tabby_24.jpg"
    photo.unlink()
    os.mkfifo(photo)  # opening it would wait forever for a writer
    with pytest.raises(ValueError) as error:
        load_split(fake_root, "test", size=16, progress=False)
    message = str(error.value)
    assert "Tabby_24.jpg is a named pipe (FIFO), not an image file" in message and "test.txt" in message
    assert "download" not in message


def test_truncated_photo_error_names_the_file(fake_root):
    path = fake_root / "images" / "Tabby_24.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"Tabby_24\.jpg"):
        load_split(fake_root, "test", size=16, progress=False)


def test_trimap_of_another_size_than_its_photo_is_refused_naming_both_and_their_sizes(fake_root):
    # Photo Tabby_24 is 64x34 (see fake_dataset); its trimap is redrawn at 50x30.
    Image.fromarray(pet_trimap(50, 30)).save(fake_root / "annotations" / "trimaps" / "Tabby_24.png")
    with pytest.raises(ValueError) as error:
        load_split(fake_root, "test", size=16, progress=False)
    message = str(error.value)
    assert all(part in message for part in ("Tabby_24.jpg", "Tabby_24.png", "64x34", "50x30", "test.txt"))


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
    original = image_module.load_rgb

    def counting_load_rgb(path):
        calls.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(image_module, "load_rgb", counting_load_rgb)
    return calls


def test_second_load_is_served_from_the_cache_without_decoding(fake_root, tmp_path, monkeypatch):
    first = load_split(fake_root, "train", size=16, cache_dir=tmp_path / "cache", progress=False)

    def fail(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(image_module, "load_rgb", fail)
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
    Image.new("RGB", (64, 34), (0, 255, 0)).save(fake_root / "images" / "Tabby_24.jpg", "PNG")  # its trimap's size
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
    Image.new("RGB", (63, 33), (0, 255, 0)).save(other_root / "images" / "Tabby_23.jpg", "JPEG")  # its trimap's size
    first = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    second = load_split(other_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert first.fingerprint != second.fingerprint
    assert not np.array_equal(first.images[0], second.images[0])


def test_rebuilding_a_cache_removes_the_stale_copy_of_the_same_root_split_and_size(fake_root, tmp_path):
    cache = tmp_path / "cache"
    other_root = tmp_path / "other" / "pets"  # same folder name, another dataset: not stale
    shutil.copytree(fake_root, other_root)
    load_split(fake_root, "test", size=16, cache_dir=cache, progress=False)
    stale = set(cache.iterdir())
    for root, split, size in ((fake_root, "valid", 16), (fake_root, "test", 24), (other_root, "test", 16)):
        load_split(root, split, size=size, cache_dir=cache, progress=False)
    kept = set(cache.iterdir()) - stale
    write_split_file(fake_root, "test.txt", ["Tabby_23", "Tabby_24"])
    rebuilt = load_split(fake_root, "test", size=16, cache_dir=cache, progress=False)
    fresh = {path for path in cache.iterdir() if rebuilt.fingerprint[:16] in path.name}
    assert len(fresh) == 4 and set(cache.iterdir()) == kept | fresh


def test_cache_command_lists_each_cache_and_the_total_size(fake_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    load_split(fake_root, "test", size=16, progress=False)
    load_split(fake_root, "valid", size=16, progress=False)
    assert main(["cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = sum(path.stat().st_size for path in (tmp_path / "cache").iterdir())  # three parts and a manifest each
    assert "-test-16px-" in lines[0] and "-valid-16px-" in lines[1]
    assert lines[2] == f"{format_size(total)} in 2 caches in {tmp_path / 'cache'}"


def test_cache_clear_deletes_every_cache_and_nothing_else(fake_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    load_split(fake_root, "test", size=16, progress=False)
    (tmp_path / "cache" / "notes.txt").write_text("not a cache\n")
    assert main(["cache", "--clear"]) == 0
    assert "removed 4 cache files" in capsys.readouterr().out  # three parts and the manifest
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------- a damaged or contested cache


def data_offset(path: Path, array: np.ndarray) -> int:
    """Where the array's bytes start in its .npy file: after the header, at the end of the file."""
    return path.stat().st_size - array.nbytes


def flip_bytes(path: Path, first) -> None:
    content = bytearray(path.read_bytes())
    middle = data_offset(path, first.images) + first.images.nbytes // 2
    content[middle : middle + 16] = bytes(255 - byte for byte in content[middle : middle + 16])
    path.write_bytes(bytes(content))


def trimap_values_of_7(path: Path, first) -> None:
    with open(path, "r+b") as file:
        file.seek(data_offset(path, first.trimaps))
        file.write(bytes([7]) * 64)


def cut_short(path: Path, first) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbled_header(path: Path, first) -> None:
    content = bytearray(path.read_bytes())
    content[10:40] = b"#" * 30
    path.write_bytes(bytes(content))


@pytest.mark.parametrize("damage, part", [(flip_bytes, "images"), (trimap_values_of_7, "trimaps"),
                                          (cut_short, "images"), (garbled_header, "trimaps")])
def test_a_damaged_cache_is_rebuilt_once_with_a_one_line_notice_naming_the_file(damage, part, fake_root, tmp_path,
                                                                                count_decodes, capsys):
    first = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    damaged = next((tmp_path / "cache").glob(f"*.{part}.npy"))
    damage(damaged, first)
    second = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith(f"labkit: the decoded cache {damaged} ")
    assert notice[0].endswith("; decoding the photos again to rebuild the cache")
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.trimaps, first.trimaps)
    load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert len(count_decodes) == 2 * len(first)  # built, rebuilt once, then served from the repaired cache


def test_trimap_values_outside_1_to_3_are_refused_even_where_the_checksum_matches(fake_root, tmp_path, capsys):
    """A cache written wrongly (by a broken decoder, say) has checksums of its wrong content."""
    import json
    import zlib

    first = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    trimaps_path = next((tmp_path / "cache").glob("*.trimaps.npy"))
    np.save(trimaps_path, np.full_like(first.trimaps, 7))
    manifest_path = next((tmp_path / "cache").glob("*.manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["parts"]["trimaps"] = {"bytes": trimaps_path.stat().st_size,
                                    "crc32": zlib.crc32(np.full_like(first.trimaps, 7))}
    manifest_path.write_text(json.dumps(manifest))
    second = load_split(fake_root, "test", size=16, cache_dir=tmp_path / "cache", progress=False)
    assert "holds trimap values outside 1-3 (7 to 7)" in capsys.readouterr().err
    np.testing.assert_array_equal(second.trimaps, first.trimaps)


def test_a_damaged_cache_that_cannot_be_rebuilt_names_the_damaged_file(fake_root, tmp_path):
    with tmpfs(tmp_path / "disk", "1M") as disk:
        first = load_split(fake_root, "test", size=16, cache_dir=disk, progress=False)
        damaged = next(disk.glob("*.images.npy"))
        flip_bytes(damaged, first)
        remount_read_only(disk)
        with pytest.raises(ValueError, match=rf"^the decoded cache {damaged} is not what was written .*, and it cannot "
                                             r"be rebuilt: cannot write the decoded-image cache into .*Read-only"):
            load_split(fake_root, "test", size=16, cache_dir=disk, progress=False)


def test_clearing_the_cache_while_another_process_builds_one_does_not_stop_the_build(synthetic_root, tmp_path):
    """`cache --clear` deleted the builder's `images.npy.PID.tmp` before it was renamed (3 of 3
    tries in the issue). Here the clear runs the moment a temporary appears, until the build ends."""
    import subprocess
    import sys
    import time

    cache = tmp_path / "cache"
    cache.mkdir()
    builder = subprocess.Popen([sys.executable, "-c", (
        "from labkit.data import load_split\n"
        f"load_split({str(synthetic_root)!r}, 'train', size=384, cache_dir={str(cache)!r}, progress=False)")],
        stderr=subprocess.PIPE, text=True)
    cleared_during_a_write = 0
    while builder.poll() is None:
        if any(path.name.endswith(".tmp") for path in cache.iterdir()):
            clear_cache(cache)
            cleared_during_a_write += 1
        time.sleep(0.001)
    assert builder.returncode == 0, builder.stderr.read()
    assert cleared_during_a_write > 0  # the clear really met the build's temporaries
    rebuilt = load_split(synthetic_root, "train", size=384, cache_dir=cache, progress=False)
    assert set(np.unique(rebuilt.trimaps)) == {1, 2, 3}


@pytest.mark.parametrize("size, text", [(512, "512 B"), (81_234_567, "81.2 MB"), (1_234_567_890, "1.2 GB")])
def test_cache_sizes_are_reported_in_decimal_units(size, text):
    assert format_size(size) == text


# ---------------------------------------------------------------- the real photo sample


@pytest.fixture(scope="session")
def shared_test_split(shared_sample, tmp_path_factory):
    """The sample's test split at the default size, decoded once for the whole session."""
    return load_split(shared_sample, "test", cache_dir=tmp_path_factory.mktemp("shared_cache"), progress=False)


def test_shared_sample_test_split_loads_with_its_rgba_png(shared_test_split):
    assert "Abyssinian_5" in names(shared_test_split.samples)
    assert shared_test_split.images.shape == (101, 256, 256, 3)
    assert shared_test_split.images.dtype == np.uint8
    assert set(np.unique(shared_test_split.trimaps)) == {1, 2, 3}


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
    assert is_synthetic(synthetic_root)
    assert arrays.images.shape == (len(read_split(synthetic_root, "train")), 32, 32, 3)
    assert set(np.unique(arrays.trimaps)) == {1, 2, 3}
