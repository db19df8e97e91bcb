"""make_synthetic writes a small, deterministic stand-in for Oxford-IIIT Pet in its official layout."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_files import file_hashes, listed_lines
from labkit.synthetic import BREEDS, make_synthetic


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n=36, size=64, seed=0)


def test_every_listed_photo_has_an_image_and_a_trimap(small_root):
    names = [fields[0] for split in ("trainval", "test") for fields in listed_lines(small_root, split)]
    assert len(names) == 36
    for name in names:
        assert (small_root / "images" / f"{name}.jpg").is_file()
        assert (small_root / "annotations" / "trimaps" / f"{name}.png").is_file()


def test_marker_file_says_the_data_is_synthetic_and_how_to_get_real_data(small_root):
    text = (small_root / "SYNTHETIC.md").read_text()
    assert "synthetic" in text.lower()
    assert "python -m labkit download" in text


def test_only_list_txt_has_the_comment_header_as_in_the_real_release(small_root):
    first_lines = {split: (small_root / "annotations" / f"{split}.txt").read_text().splitlines()[0]
                   for split in ("trainval", "test", "list")}
    assert first_lines["list"] == "#Image CLASS-ID SPECIES BREED ID"
    assert not first_lines["trainval"].startswith("#") and not first_lines["test"].startswith("#")


def test_list_txt_is_the_union_of_trainval_and_test(small_root):
    union = sorted(listed_lines(small_root, "trainval") + listed_lines(small_root, "test"))
    assert sorted(listed_lines(small_root, "list")) == union


def test_splits_are_disjoint_and_two_to_one(small_root):
    trainval = {fields[0] for fields in listed_lines(small_root, "trainval")}
    test = {fields[0] for fields in listed_lines(small_root, "test")}
    assert not trainval & test
    assert (len(trainval), len(test)) == (24, 12)  # every third photo of each of 6 breeds (6 photos each)


def test_lines_follow_the_official_name_class_species_breed_format(small_root):
    for name, class_id, species, breed_id in listed_lines(small_root, "list"):
        breed, number = name.rsplit("_", 1)
        assert number.isdigit()
        # The dataset's convention: capitalised breed names are cats (1), lower-case dogs (2).
        assert species == ("1" if breed[0].isupper() else "2")
        assert 1 <= int(class_id) <= len(BREEDS)
        assert 1 <= int(breed_id) <= int(class_id)


def test_each_breed_has_one_class_id_and_both_species_appear(small_root):
    ids_per_breed = {}
    for name, class_id, species, breed_id in listed_lines(small_root, "list"):
        ids_per_breed.setdefault(name.rsplit("_", 1)[0], set()).add((class_id, species, breed_id))
    assert set(ids_per_breed) == {breed.name for breed in BREEDS}
    assert all(len(ids) == 1 for ids in ids_per_breed.values())
    assert {next(iter(ids))[1] for ids in ids_per_breed.values()} == {"1", "2"}


def test_photos_are_rgb_jpegs_with_trimaps_of_the_same_varied_sizes(small_root):
    sizes = set()
    for image_path in (small_root / "images").glob("*.jpg"):
        trimap_path = small_root / "annotations" / "trimaps" / f"{image_path.stem}.png"
        with Image.open(image_path) as photo, Image.open(trimap_path) as trimap:
            assert (photo.format, photo.mode, trimap.mode) == ("JPEG", "RGB", "L")
            assert photo.size == trimap.size
            sizes.add(photo.size)
    assert len(sizes) > 1
    assert all(int(0.8 * 64) <= side <= int(1.2 * 64) for size in sizes for side in size)  # +-20%, floored


def test_every_trimap_has_pet_background_and_border_values(small_root):
    for path in (small_root / "annotations" / "trimaps").glob("*.png"):
        assert set(np.unique(np.asarray(Image.open(path))).tolist()) == {1, 2, 3}


def test_border_band_separates_pet_from_background(small_root):
    # Like the real trimaps, a pet pixel never touches a background pixel: the band lies between.
    for path in (small_root / "annotations" / "trimaps").glob("*.png"):
        trimap = np.asarray(Image.open(path))
        pet, background = trimap == 1, trimap == 2
        assert not (pet[:, 1:] & background[:, :-1]).any() and not (pet[:, :-1] & background[:, 1:]).any()
        assert not (pet[1:] & background[:-1]).any() and not (pet[:-1] & background[1:]).any()


def test_same_seed_writes_byte_identical_files(tmp_path):
    first = file_hashes(make_synthetic(tmp_path / "first", n=8, size=48, seed=3))
    second = file_hashes(make_synthetic(tmp_path / "second", n=8, size=48, seed=3))
    assert first == second


def test_different_seeds_draw_different_photos(tmp_path):
    first = file_hashes(make_synthetic(tmp_path / "first", n=4, size=48, seed=0))
    second = file_hashes(make_synthetic(tmp_path / "second", n=4, size=48, seed=1))
    assert all(first[name] != second[name] for name in first if name.startswith("images"))


@pytest.mark.parametrize("arguments", [{"n": 0}, {"size": 8}])
def test_rejects_arguments_too_small_to_draw_a_dataset(tmp_path, arguments):
    with pytest.raises(ValueError, match="make_synthetic"):
        make_synthetic(tmp_path, **arguments)


def test_every_breed_appears_in_train_valid_and_test(tmp_path):
    from labkit.data import read_split

    root = make_synthetic(tmp_path / "s", n=120, size=48, seed=0)
    breeds = {split: {sample.breed for sample in read_split(root, split)} for split in ("train", "valid", "test")}
    assert breeds["train"] == breeds["valid"] == breeds["test"] and len(breeds["test"]) == 6












def test_the_default_set_keeps_its_split_rule_for_any_count():
    from labkit.synthetic_shape import small_shape

    for n in (1, 7, 37, 240):
        photos = small_shape(n).photos()
        assert [photo.index for photo in photos] == list(range(n))
        assert all(photo.breed == BREEDS[photo.index % 6] for photo in photos)
        assert all((photo.split == "test") == ((photo.index // 6) % 3 == 2) for photo in photos)


def test_trimap_border_band_matches_pil_rank_filters():
    from PIL import ImageFilter

    from labkit.synthetic import trimap_from_mask

    rng = np.random.default_rng(0)
    for band in (1, 3, 8):
        mask = rng.random((41, 57)) > 0.6  # touches every edge
        silhouette = Image.fromarray(mask.astype(np.uint8) * 255)
        grown = np.asarray(silhouette.filter(ImageFilter.MaxFilter(2 * band + 1))) > 0
        shrunk = np.asarray(silhouette.filter(ImageFilter.MinFilter(2 * band + 1))) > 0
        expected = np.where(mask, 1, 2).astype(np.uint8)
        expected[grown & ~shrunk] = 3
        assert (trimap_from_mask(mask, band) == expected).all()
