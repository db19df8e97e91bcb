"""The decoded cache: each split decoded and resized once into uint8 arrays on disk, then served
from memory, so an epoch costs no JPEG decoding.

A cache is three .npy files named `<root>-<root id>-<split>-<size>px-<fingerprint>` and a manifest
written after them with their sizes and checksums, checked on every load: a damaged cache is
rebuilt once, with a one-line notice. A new fingerprint replaces the older copies of the same
root, split and size, and `python -m labkit cache [--clear]` shows or empties the folder.
"""

import glob
import hashlib
import json
import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from labkit import paths
from labkit.files import TEMPORARY_SUFFIX, is_orphan, remove_orphans, writable_folder, write_atomically, writer_pid
from labkit.data import images
from labkit.data.images import DEFAULT_SIZE, trimap_to_mask
from labkit.data.roots import FIX_HINT, resolve_root
from labkit.data.splits import Sample, read_split, split_file_path

CACHE_FORMAT_VERSION = 3  # bump whenever decoding, resizing or the files change, so old caches are rebuilt
PARTS = ("images", "trimaps", "sizes")
# Written after the three parts: each part's byte size and checksum. Its presence marks a complete
# cache, and loading checks every part against it, so a damaged file is rebuilt, not trained on.
MANIFEST = "manifest.json"
TRIMAP_VALUES = (1, 3)  # the lowest and highest value a trimap holds: pet, background, border
FOLDER_FIX = "point LABKIT_CACHE at a folder with room that you may write to"


class CacheDamaged(ValueError):
    """A cache file whose content is not what load_split wrote (flipped bytes, cut short, edited)."""


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
    files[MANIFEST] = folder / f"{prefix}{fingerprint[:16]}.{MANIFEST}"
    damage = None
    try:
        cached = read_cache(files, len(samples), size)
    except CacheDamaged as error:
        cached, damage = None, error
        tqdm.write(f"labkit: {error}; decoding the photos again to rebuild the cache", file=sys.stderr)
    if cached is not None:
        photos, trimaps, sizes = cached
        return SplitArrays(photos, trimaps, samples, [(int(height), int(width)) for height, width in sizes], fingerprint)
    rebuildable_folder(folder, damage)
    remove_orphans(folder)  # parts of a build that was killed
    description = f"decoding {split} ({root.name}, {size}px)"
    photos, trimaps, original_sizes = _decode_split(samples, size, split_file, progress, description)
    write_cache(files, photos, trimaps, np.array(original_sizes, dtype=np.int64).reshape(-1, 2))
    remove_stale_copies(folder, prefix, keep=set(files.values()))
    return SplitArrays(photos, trimaps, samples, original_sizes, fingerprint)


def rebuildable_folder(folder: Path, damage: CacheDamaged | None) -> None:
    """Refuse a cache folder that cannot take files before any photo is decoded; the damaged
    file, if one is why the cache is rebuilt, is named too."""
    try:
        writable_folder(folder, "the decoded-image cache", FOLDER_FIX)
    except OSError as error:
        if damage is None:
            raise
        raise CacheDamaged(f"{damage}, and it cannot be rebuilt: {error}") from None


def read_cache(files: dict[str, Path], count: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The cached images, trimaps and original sizes; None when no complete cache exists.

    Every part is checked against the manifest written after it (byte size, CRC-32 of the array:
    one pass at several GB/s), then its shape and the trimaps' values are checked.

    Raises:
        CacheDamaged: one line naming the damaged file and how it differs.
    """
    if not files[MANIFEST].is_file():
        return None  # never finished (an interrupted build), so not damaged either
    try:
        written = json.loads(files[MANIFEST].read_text())["parts"]
        expected = {part: (int(written[part]["bytes"]), int(written[part]["crc32"])) for part in PARTS}
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise CacheDamaged(f"the decoded cache's manifest {files[MANIFEST]} is unreadable ({error})") from None
    arrays = [read_part(files[part], *expected[part]) for part in PARTS]
    images, trimaps, sizes = arrays
    shapes = {"images": (count, size, size, 3), "trimaps": (count, size, size), "sizes": (count, 2)}
    for part, array in zip(PARTS, arrays):
        if array.shape != shapes[part] or array.dtype != (np.int64 if part == "sizes" else np.uint8):
            raise CacheDamaged(f"the decoded cache {files[part]} holds {array.dtype} {array.shape}, "
                               f"not the {shapes[part]} this split needs")
    if count and (trimaps.min() < TRIMAP_VALUES[0] or trimaps.max() > TRIMAP_VALUES[1]):
        raise CacheDamaged(f"the decoded cache {files['trimaps']} holds trimap values outside "
                           f"{TRIMAP_VALUES[0]}-{TRIMAP_VALUES[1]} ({trimaps.min()} to {trimaps.max()})")
    return images, trimaps, sizes


def read_part(path: Path, size: int, checksum: int) -> np.ndarray:
    """One part of a cache, checked against the byte size and checksum written with it."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise CacheDamaged(f"the decoded cache {path} is missing") from None
    if actual != size:
        raise CacheDamaged(f"the decoded cache {path} has {actual} bytes, not the {size} written (cut short or overwritten)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CacheDamaged(f"the decoded cache {path} cannot be read ({str(error).splitlines()[0]})") from None
    if zlib.crc32(np.ascontiguousarray(array)) != checksum:
        raise CacheDamaged(f"the decoded cache {path} is not what was written (its checksum differs)")
    return array


def write_cache(files: dict[str, Path], *arrays: np.ndarray) -> None:
    """Write the parts, each atomically, then the manifest with their sizes and checksums. A part
    deleted meanwhile (`cache --clear`) leaves the cache without a manifest: rebuilt on next use."""
    parts = {}
    for part, array in zip(PARTS, arrays):
        def save(file, array=array, part=part) -> None:
            np.save(file, array)
            parts[part] = {"bytes": file.tell(), "crc32": zlib.crc32(np.ascontiguousarray(array))}

        write_atomically(files[part], save, FOLDER_FIX)
    if all(files[part].is_file() for part in PARTS):
        manifest = json.dumps({"format": CACHE_FORMAT_VERSION, "parts": parts}, indent=1).encode()
        write_atomically(files[MANIFEST], lambda file: file.write(manifest), FOLDER_FIX)


def decoded_bytes(count: int, size: int) -> int:
    """Memory (and disk) that `count` photos take decoded at `size`: RGB photos and trimaps, uint8."""
    return count * size * size * (3 + 1)


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


def remove_stale_copies(folder: Path, prefix: str, keep: set[Path]) -> None:
    """Delete the older caches of the same root, split and size (about a gigabyte each at 256 px
    on the full dataset). Readers load a cache whole, so deleting one in use is safe."""
    for path in folder.glob(f"{glob.escape(prefix)}*"):
        if path not in keep and is_cache_file(path) and writer_pid(path) is None:
            path.unlink(missing_ok=True)


def is_cache_file(path: Path) -> bool:
    """A part, manifest or temporary that load_split writes."""
    return path.name.endswith((".npy", f".{MANIFEST}", TEMPORARY_SUFFIX))


# ---------------------------------------------------------------- what `python -m labkit cache` shows


def cache_files(folder: str | Path | None = None) -> list[Path]:
    """The files load_split wrote in `folder` (default `paths.cache_dir()`), interrupted writes
    included; anything else a user keeps there is left out."""
    folder = Path(folder) if folder is not None else paths.cache_dir()
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and is_cache_file(path))


def clear_cache(folder: str | Path | None = None) -> tuple[int, int]:
    """Delete every cache file in `folder`; returns (files deleted, bytes freed). Caches are
    rebuilt on the next load_split. A temporary that a live process is still writing is left
    to it: deleting it would make that process fail as it renames the file into place."""
    removed = freed = 0
    for path in cache_files(folder):
        if writer_pid(path) is not None and not is_orphan(path):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # renamed or removed by a build meanwhile
            continue
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
        name = path.name.rsplit(".", 2)[0] if writer_pid(path) is None else path.name  # drop .images.npy
        sizes[name] = sizes.get(name, 0) + path.stat().st_size
    return sizes
