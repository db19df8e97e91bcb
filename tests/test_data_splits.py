"""labkit.data.splits: which photos each split lists, and split files that are refused."""

import pytest

from labkit.data.splits import SPLITS, read_split

from fake_pets import fake_root, names, write_pet, write_split_file  # noqa: F401 (fake_root is a fixture)

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


def test_photo_listed_twice_is_refused_naming_the_file_and_both_lines(fake_root):
    # Lines 3 and 14 (after the two header lines): indices 0 and 11, one in valid, one in train.
    write_split_file(fake_root, "trainval.txt", [f"Tabby_{index}" for index in range(11)] + ["Tabby_0"])
    with pytest.raises(ValueError) as error:
        read_split(fake_root, "train")
    message = str(error.value)
    assert "trainval.txt" in message and "Tabby_0" in message and "lines 3 and 14" in message


@pytest.mark.parametrize("split", SPLITS)
def test_photo_in_both_trainval_and_test_is_refused_naming_it_both_files_and_lines(fake_root, split):
    write_split_file(fake_root, "test.txt", ["Tabby_23", "Tabby_5"])  # Tabby_5: line 8 of trainval.txt
    with pytest.raises(ValueError) as error:
        read_split(fake_root, split)
    message = str(error.value)
    assert "Tabby_5" in message and "trainval.txt (line 8)" in message and "test.txt (line 4)" in message


def test_split_is_read_without_the_other_split_file(fake_root):
    (fake_root / "annotations" / "test.txt").unlink()
    assert len(read_split(fake_root, "trainval")) == 23


def test_split_file_listing_no_photos_is_refused_with_the_fix(fake_root):
    write_split_file(fake_root, "test.txt", [])  # the header comments only
    with pytest.raises(ValueError, match=r"test\.txt lists no photos") as error:
        read_split(fake_root, "test")
    assert "python -m labkit download" in str(error.value)


def test_shared_sample_split_sizes(shared_sample):
    sizes = {split: len(read_split(shared_sample, split)) for split in SPLITS}
    assert sizes == {"trainval": 200, "train": 180, "valid": 20, "test": 101}


def test_evenly_spaced_spreads_picks_through_the_list_without_its_ends():
    from labkit.data import evenly_spaced

    assert evenly_spaced(list(range(180)), 4) == [36, 72, 107, 143]
    assert evenly_spaced(list("abcdefghij"), 1) == ["e"]  # position 4.5, rounded to even: the middle
    assert evenly_spaced(list(range(5)), 4) == [0, 1, 3, 4]  # too few to leave the ends out
    assert evenly_spaced([1, 2], 3) == [1, 2]
    for total in range(1, 40):
        for count in range(1, 8):
            picked = evenly_spaced(list(range(total)), count)
            assert len(picked) == min(total, count) and picked == sorted(set(picked))
    with pytest.raises(ValueError):
        evenly_spaced([1, 2, 3], 0)


def test_each_fold_holds_out_its_own_lines_and_trains_on_the_rest(fake_root):
    trainval = names(read_split(fake_root, "trainval"))  # 23 photos
    held_out = [names(read_split(fake_root, "valid", valid_fold=fold, folds=5)) for fold in range(5)]
    assert held_out[2] == [trainval[2], trainval[7], trainval[12], trainval[17], trainval[22]]
    assert sorted(name for fold in held_out for name in fold) == sorted(trainval)
    assert names(read_split(fake_root, "train", valid_fold=2, folds=5)) == [name for name in trainval
                                                                            if name not in held_out[2]]


def test_the_default_fold_is_the_valid_split(fake_root):
    assert names(read_split(fake_root, "valid", valid_fold=0, folds=10)) == names(read_split(fake_root, "valid"))


@pytest.mark.parametrize("valid_fold, folds", [(5, 5), (-1, 5), (0, 1)])
def test_a_fold_that_does_not_exist_is_refused(fake_root, valid_fold, folds):
    with pytest.raises(ValueError, match="valid_fold must be one of"):
        read_split(fake_root, "valid", valid_fold=valid_fold, folds=folds)


def test_folds_of_the_trainval_cache_are_the_photos_the_split_files_list(fake_root, tmp_path):
    from labkit.data import split_arrays

    for fold in (0, 3):
        for split in ("train", "valid"):
            arrays = split_arrays(fake_root, split, size=32, valid_fold=fold, folds=5, progress=False)
            assert names(arrays.samples) == names(read_split(fake_root, split, valid_fold=fold, folds=5))
            assert len(arrays.images) == len(arrays.original_sizes) == len(arrays)
