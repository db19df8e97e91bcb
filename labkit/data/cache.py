"""The decoded cache: each split decoded and resized once into uint8 arrays on disk, then served
from memory, so an epoch costs no JPEG decoding.

A cache is three .npy files named `<root>-<root id>-<split>-<size>px-<fingerprint>`; a new
fingerprint replaces the older copies of the same root, split and size, and
`python -m labkit cache [--clear]` shows or empties the folder.
"""

import glob
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from labkit import paths
from labkit.data import images
from labkit.data.images import DEFAULT_SIZE, trimap_to_mask
from labkit.data.roots import FIX_HINT, resolve_root
from labkit.data.splits import Sample, read_split, split_file_path

CACHE_FORMAT_VERSION = 2  # bump whenever decoding or resizing changes, so old caches are rebuilt
PARTS = ("images", "trimaps", "sizes")  # "sizes" is written last: its presence marks a complete cache


@dataclass
class SplitArrays:
    """A whole split decoded and resized into memory, with what is needed to go back to the
    original resolution (original_sizes, samples[i].trimap_path)."""

    images: np.ndarray  # (N, size, size, 3) uint8
    trimaps: np.ndarray  # (N, size, size) uint8 in {1, 2, 3}
    samples: list[Sample]
    original_sizes: list[tuple[int, int]]  # (height, width) of each original photo
    fingerprint: str  # identifies root + file list + size; the cache key

    def masks(self, border: str = "pet") -> np.ndarray:
        return trimap_to_mask(self.trimaps, border)

    def __len__(self) -> int:
        return len(self.samples)


def load_split(
    root: str | Path | None,
    split: str,
    size: int = DEFAULT_SIZE,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> SplitArrays:
    """Decode a split once into a (size x size) uint8 cache, then serve it from memory.

    Args:
        root: dataset folder, or None for `resolve_root()`'s choice.
        size: side of the square the photos and trimaps are resized to.
        cache_dir: where the .npy caches go (default `paths.cache_dir()`). The cache is rebuilt
            whenever the root, size or any listed file (name, byte size, mtime) changes, and the
            rebuilt copy replaces the old one.
        progress: show a progress bar while decoding.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    root = resolve_root(root)
    samples = read_split(root, split)
    split_file = split_file_path(root, split)
    fingerprint = _fingerprint(root, samples, size, split_file)
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    prefix = cache_prefix(root, split, size)
    files = {part: folder / f"{prefix}{fingerprint[:16]}.{part}.npy" for part in PARTS}
    if all(path.is_file() for path in files.values()):
        photos, trimaps, sizes = (np.load(files[part]) for part in PARTS)
        original_sizes = [(int(height), int(width)) for height, width in sizes]
        return SplitArrays(photos, trimaps, samples, original_sizes, fingerprint)
    description = f"decoding {split} ({root.name}, {size}px)"
    photos, trimaps, original_sizes = _decode_split(samples, size, split_file, progress, description)
    folder.mkdir(parents=True, exist_ok=True)
    _save_atomically(files["images"], photos)
    _save_atomically(files["trimaps"], trimaps)
    _save_atomically(files["sizes"], np.array(original_sizes, dtype=np.int64).reshape(-1, 2))
    remove_stale_copies(folder, prefix, keep=set(files.values()))
    return SplitArrays(photos, trimaps, samples, original_sizes, fingerprint)


def cache_prefix(root: Path, split: str, size: int) -> str:
    """The start of every cache file name of one root, split and size; the root's readable name
    plus a hash of its full path, because two datasets are often both called `oxford-iiit-pet`."""
    root_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return f"{root.name}-{root_id}-{split}-{size}px-"


def _fingerprint(root: Path, samples: list[Sample], size: int, split_file: Path) -> str:
    """Hash of everything the decoded arrays depend on; a missing file is reported here, early."""
    digest = hashlib.sha256(f"{CACHE_FORMAT_VERSION}|{root.resolve()}|{size}".encode())
    for sample in samples:
        for path in (sample.image_path, sample.trimap_path):
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{path} is missing but {split_file} lists {sample.name}. To fix it, {FIX_HINT}."
                ) from None
            digest.update(f"|{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _decode_split(
    samples: list[Sample], size: int, split_file: Path, progress: bool, description: str
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Decode and resize every sample with a thread pool (PIL releases the GIL while decoding)."""
    photos = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    trimaps = np.empty((len(samples), size, size), dtype=np.uint8)

    def decode(index: int) -> tuple[int, int]:
        sample = samples[index]
        try:
            photo, trimap = images.load_pair(sample.image_path, sample.trimap_path)
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(f"{error} (listed in {split_file} as {sample.name})") from error
        photos[index] = np.asarray(images.resize_photo(photo, size))
        trimaps[index] = images.resize_trimap(trimap, size)
        return photo.height, photo.width

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        decoded = pool.map(decode, range(len(samples)))
        original_sizes = list(tqdm(decoded, total=len(samples), desc=description, disable=not progress))
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, don't wait for thousands of decodes
    return photos, trimaps, original_sizes


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Write to a temporary file then rename, so an interrupted run never leaves a half cache."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        np.save(file, array)
    os.replace(temporary, path)


def remove_stale_copies(folder: Path, prefix: str, keep: set[Path]) -> None:
    """Delete the older caches of the same root, split and size (about a gigabyte each at 256 px
    on the full dataset). Readers load a cache whole, so deleting one in use is safe."""
    for path in folder.glob(f"{glob.escape(prefix)}*.npy"):
        if path not in keep:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- what `python -m labkit cache` shows


def cache_files(folder: str | Path | None = None) -> list[Path]:
    """The files load_split wrote in `folder` (default `paths.cache_dir()`), interrupted writes
    included; anything else a user keeps there is left out."""
    folder = Path(folder) if folder is not None else paths.cache_dir()
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.name.endswith((".npy", ".tmp")))


def clear_cache(folder: str | Path | None = None) -> tuple[int, int]:
    """Delete every cache file in `folder`; returns (files deleted, bytes freed). Caches are
    rebuilt on the next load_split."""
    removed = freed = 0
    for path in cache_files(folder):
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        removed, freed = removed + 1, freed + size
    return removed, freed


def format_size(size: int) -> str:
    """Bytes as a short human-readable text: 512 B, 81.2 MB, 1.2 GB."""
    value, unit = float(size), "B"
    for larger in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def cache_sizes(folder: str | Path | None = None) -> dict[str, int]:
    """Bytes on disk of each cached split in `folder` (its three .npy files together), by name;
    an interrupted write counts under its own name."""
    sizes = {}
    for path in cache_files(folder):
        name = path.name.rsplit(".", 2)[0] if path.name.endswith(".npy") else path.name  # drop .images.npy
        sizes[name] = sizes.get(name, 0) + path.stat().st_size
    return sizes
