"""Oxford-IIIT Pet for binary segmentation, in the order the data flows: photo -> cache -> batch.

The dataset is read in its official layout (what `images.tar.gz` and `annotations.tar.gz` unpack
to): `images/<name>.jpg` and `annotations/trimaps/<name>.png`, with the splits listed in
`annotations/trainval.txt` and `annotations/test.txt`.

    roots     where the dataset is: resolve_root, the synthetic stand-in
    splits    which photos a split lists: read_split, Sample; evenly_spaced picks a few
    images    one photo or trimap from disk: load_rgb, load_trimap, trimap_to_mask, resize_photo
    cache     a whole split decoded once into uint8 arrays on disk: load_split, SplitArrays
    folds     train and valid as one fold of trainval's arrays: split_arrays
    batches   arrays to model input: to_tensors, normalize
    dataset   the per-item PetSegmentation Dataset, for transforms.v2

Everything public is available here, so `from labkit import data; data.load_split(...)` works.
"""

from labkit.data.batches import IMAGENET_MEAN, IMAGENET_STD, normalize, to_tensors
from labkit.data.cache import CACHE_FORMAT_VERSION, SplitArrays, cache_files, clear_cache, load_split
from labkit.data.dataset import PetSegmentation
from labkit.data.folds import fold_of, split_arrays
from labkit.data.images import (
    BORDER_MODES,
    DEFAULT_SIZE,
    IGNORE_INDEX,
    load_pair,
    load_rgb,
    load_rgb_as_displayed,
    load_trimap,
    resize_photo,
    resize_trimap,
    to_rgb,
    trimap_to_mask,
)
from labkit.data.roots import (
    FIX_HINT,
    SyntheticDataWarning,
    chosen_root,
    default_root,
    is_synthetic,
    make_synthetic,
    resolve_root,
    synthetic_root,
)
from labkit.data.splits import FOLDS, SPECIES, SPLITS, Sample, evenly_spaced, in_valid_fold, read_split, split_file_path

__all__ = [
    "BORDER_MODES", "CACHE_FORMAT_VERSION", "DEFAULT_SIZE", "FIX_HINT", "IGNORE_INDEX", "IMAGENET_MEAN",
    "IMAGENET_STD", "SPECIES", "SPLITS", "PetSegmentation", "Sample", "SplitArrays", "SyntheticDataWarning",
    "FOLDS", "cache_files", "chosen_root", "clear_cache", "default_root", "evenly_spaced", "fold_of", "in_valid_fold", "split_arrays", "is_synthetic", "load_pair", "load_rgb",
    "load_rgb_as_displayed", "load_split", "load_trimap", "make_synthetic", "normalize", "read_split",
    "resize_photo", "resize_trimap", "resolve_root", "split_file_path", "synthetic_root", "to_rgb",
    "to_tensors", "trimap_to_mask",
]
