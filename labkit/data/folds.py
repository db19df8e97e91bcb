"""train and valid as folds of the decoded trainval split, so any fold is one cache away.

Training and evaluation ask for a split by name and fold (`split_arrays`); test and trainval come
straight from the cache, and train and valid are cut out of trainval's arrays by the one rule of
`labkit.data.splits.in_valid_fold`. With the default fold (0 of 10) they hold the very photos, in
the very order, that `read_split(root, "train" | "valid")` lists.
"""

from pathlib import Path

from labkit.data.cache import SplitArrays, load_split
from labkit.data.images import DEFAULT_SIZE
from labkit.data.splits import FOLDS, check_fold, in_valid_fold


def fold_of(trainval: SplitArrays, split: str, valid_fold: int = 0, folds: int = FOLDS) -> SplitArrays:
    """The `split` ("train" or "valid") part of decoded trainval arrays for one fold."""
    check_fold(valid_fold, folds)
    positions = [position for position in range(len(trainval))
                 if in_valid_fold(position, valid_fold, folds) == (split == "valid")]
    return SplitArrays(trainval.images[positions], trainval.trimaps[positions],
                       [trainval.samples[position] for position in positions],
                       [trainval.original_sizes[position] for position in positions],
                       f"{trainval.fingerprint}:{split}-fold{valid_fold}of{folds}")


def split_arrays(root: str | Path | None, split: str, size: int = DEFAULT_SIZE, valid_fold: int = 0,
                 folds: int = FOLDS, progress: bool = True) -> SplitArrays:
    """A split decoded at `size`: train and valid as one fold of trainval (`fold_of`), the others
    as `load_split` decodes them."""
    if split not in ("train", "valid"):
        return load_split(root, split, size=size, progress=progress)
    return fold_of(load_split(root, "trainval", size=size, progress=progress), split, valid_fold, folds)

