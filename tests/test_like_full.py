"""labkit.bench.like_full: a synthetic set shaped like the real Oxford-IIIT Pet, for rehearsing its cost."""

import numpy as np
import pytest

from dataset_files import file_hashes, listed_lines


def test_like_full_shape_has_the_official_breeds_and_split_sizes():
    from labkit.bench.like_full import like_full_shape

    shape = like_full_shape()
    cats = [breed for breed in shape.breeds if breed.species == "cat"]
    assert (len(shape.breeds), len(cats)) == (37, 12)
    assert all(breed.name[0].isupper() == (breed.species == "cat") for breed in shape.breeds)
    assert len({breed.name.lower() for breed in shape.breeds}) == 37  # distinct even on a case-blind disk
    assert shape.split_counts() == {"trainval": 3680, "test": 3669}
    photos = shape.photos()
    assert len(photos) == 7349 and len({photo.name for photo in photos}) == 7349
    per_breed = {}
    for photo in photos:
        per_breed.setdefault((photo.breed.name, photo.split), []).append(photo)
    assert len(per_breed) == 74 and all(99 <= len(listed) <= 100 for listed in per_breed.values())


def test_like_full_photo_sizes_are_drawn_like_the_real_ones():
    from labkit.bench.like_full import RealisticSizes

    sizes = [RealisticSizes().draw(np.random.default_rng([0, index])) for index in range(2000)]
    long_sides = np.array([max(size) for size in sizes])
    portrait = np.mean([height > width for width, height in sizes])
    assert 0.5 < np.mean(long_sides == 500) < 0.75  # 189 of the sample's 303
    assert (500, 375) in sizes and (500, 333) in sizes and (375, 500) in sizes
    assert 0.15 < portrait < 0.35 and (long_sides > 1500).any() and long_sides.max() <= 1600
    assert min(min(size) for size in sizes) >= 32


def test_like_full_set_on_disk_lists_every_breed_in_both_splits(tmp_path):
    from labkit.synthetic import write_synthetic
    from labkit.bench.like_full import like_full_shape

    root = write_synthetic(tmp_path / "full", like_full_shape(n=148, size=32), workers=1)
    trainval, test = listed_lines(root, "trainval"), listed_lines(root, "test")
    assert (len(trainval), len(test)) == (74, 74)
    for lines in (trainval, test):
        assert len({fields[0].rsplit("_", 1)[0] for fields in lines}) == 37
    class_ids = {fields[0].rsplit("_", 1)[0]: fields[1:] for fields in listed_lines(root, "list")}
    assert sorted(int(ids[0]) for ids in class_ids.values()) == list(range(1, 38))
    assert sum(ids[1] == "1" for ids in class_ids.values()) == 12


def test_the_files_do_not_depend_on_the_number_of_workers(tmp_path):
    from labkit.synthetic import write_synthetic
    from labkit.bench.like_full import like_full_shape

    shape = like_full_shape(n=12, size=40)
    one = file_hashes(write_synthetic(tmp_path / "one", shape, seed=5, workers=1))
    two = file_hashes(write_synthetic(tmp_path / "two", shape, seed=5, workers=2))
    assert one == two and len(one) == 2 * 12 + 4  # photos, trimaps, three split files, SYNTHETIC.md


@pytest.mark.parametrize("arguments, message", [({"n": 1}, "--count >= 2"), ({"size": 16}, "--size")])
def test_like_full_refuses_a_count_or_size_it_cannot_draw(arguments, message):
    from labkit.bench.like_full import like_full_shape

    with pytest.raises(ValueError, match=message):
        like_full_shape(**arguments)
