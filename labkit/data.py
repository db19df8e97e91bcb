"""Oxford-IIIT Pet for binary segmentation: splits, decoding, trimaps to masks, a decoded cache.

The dataset is read in its official layout (what `images.tar.gz` and `annotations.tar.gz` unpack
to): `images/<name>.jpg` and `annotations/trimaps/<name>.png`, with the splits listed in
`annotations/trainval.txt` and `annotations/test.txt`. Each split is decoded and resized once into
a uint8 cache on disk and then served from memory, so an epoch costs no JPEG decoding.
"""

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from labkit import paths
from labkit.metrics import IGNORE_INDEX  # one definition, shared with the losses and metrics
from labkit.synthetic import make_synthetic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "valid", "trainval", "test")
DEFAULT_SIZE = 256
BORDER_MODES = ("pet", "background", "ignore")
CACHE_FORMAT_VERSION = 1  # bump whenever decoding or resizing changes, so old caches are rebuilt

T = TypeVar("T")
SPECIES = {"1": "cat", "2": "dog"}
FIX_HINT = "run `python -m labkit download` or set LABKIT_DATA to a folder with images/ and annotations/"


class SyntheticDataWarning(UserWarning):
    """No real dataset was found, so the synthetic stand-in is used."""


@dataclass(frozen=True)
class Sample:
    """One listed photo: its identity and where its photo and trimap live."""

    name: str  # "Abyssinian_1"
    breed: str  # "Abyssinian"
    species: str  # "cat" | "dog"
    class_id: int  # 1..37
    image_path: Path
    trimap_path: Path


def default_root() -> Path:
    return paths.data_dir() / "oxford-iiit-pet"


def synthetic_root() -> Path:
    return paths.data_dir() / "synthetic"


def is_synthetic(root: str | Path) -> bool:
    """True for a folder written by `make_synthetic` (it leaves a SYNTHETIC.md marker)."""
    return (Path(root) / "SYNTHETIC.md").is_file()


def resolve_root(root: str | Path | None = None) -> Path:
    """Pick the dataset folder: argument > $LABKIT_DATA > data/oxford-iiit-pet > synthetic set.

    The synthetic set is generated on first use, so every notebook runs even before the real
    photos are downloaded.
    """
    if root is not None:
        candidate, source = Path(root).expanduser(), "the root argument"
    elif os.environ.get("LABKIT_DATA"):
        candidate, source = Path(os.environ["LABKIT_DATA"]).expanduser(), "$LABKIT_DATA"
    elif (default_root() / "annotations" / "trainval.txt").is_file():
        return default_root()
    else:
        candidate = synthetic_root()
        if not (candidate / "annotations" / "trainval.txt").is_file():
            make_synthetic(candidate)
        warnings.warn(
            f"Oxford-IIIT Pet not found at {default_root()}; using the synthetic stand-in at "
            f"{candidate}. For the real photos, {FIX_HINT}.",
            SyntheticDataWarning,
            stacklevel=2,
        )
        return candidate
    if not (candidate / "annotations" / "trainval.txt").is_file():
        raise FileNotFoundError(
            f"No dataset at {candidate} (from {source}): {candidate / 'annotations' / 'trainval.txt'} "
            f"is missing. To fix it, {FIX_HINT}."
        )
    return candidate


def read_split(root: str | Path | None, split: str) -> list[Sample]:
    """The samples of one split, in file order.

    valid is every 10th line of trainval.txt (0-based index % 10 == 0, as segmentation_models_pytorch
    does) and train is the rest, so the official test split stays untouched for the final report.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    root = resolve_root(root)
    split_file = split_file_path(root, split)
    if not split_file.is_file():
        raise FileNotFoundError(f"Split file {split_file} is missing. To fix it, {FIX_HINT}.")
    samples = []
    for line_number, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[1].isdigit() or fields[2] not in SPECIES:
            raise ValueError(
                f"{split_file}, line {line_number}: expected `NAME CLASS_ID SPECIES BREED_ID`, "
                f"got {line!r}. Re-download the annotations or fix the line."
            )
        name = fields[0]
        samples.append(
            Sample(
                name=name,
                breed=name.rsplit("_", 1)[0],
                species=SPECIES[fields[2]],
                class_id=int(fields[1]),
                image_path=root / "images" / f"{name}.jpg",
                trimap_path=root / "annotations" / "trimaps" / f"{name}.png",
            )
        )
    if split == "valid":
        return samples[::10]
    if split == "train":
        return [sample for index, sample in enumerate(samples) if index % 10 != 0]
    return samples


def split_file_path(root: Path, split: str) -> Path:
    """The annotations file that lists a split (train and valid both come from trainval.txt)."""
    return root / "annotations" / ("test.txt" if split == "test" else "trainval.txt")


def _read_image(path: str | Path, convert: Callable[[Image.Image], T]) -> T:
    """Decode an image with `convert` while the file is open, turning every failure into an error
    that names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. To fix it, {FIX_HINT}.")
    try:
        with Image.open(path) as image:  # closes the file, which GIFs otherwise keep open
            return convert(image)
    except OSError as error:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(
            f"{path} is not a readable image ({error}). Re-download the dataset or delete the file "
            "and remove its line from the split files."
        ) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as RGB (palettes with transparency go through RGBA first)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # converting such palettes straight to RGB warns
    # No EXIF rotation: the trimaps were drawn on the stored pixel grid.
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Load any photo as RGB: the release has RGBA PNGs, palette GIFs, grayscale and CMYK JPEGs,
    some of them named .jpg (PIL detects the real format from the file's content)."""
    return _read_image(path, to_rgb)


def resize_photo(photo: Image.Image, size: int) -> Image.Image:
    """A photo as the model sees it: size x size, bilinear (PIL's bilinear filter widens with the
    reduction factor, so shrinking is antialiased). Training and inference both use this."""
    return photo.resize((size, size), Image.Resampling.BILINEAR)


def load_trimap(path: str | Path) -> np.ndarray:
    """Load a trimap as (H, W) uint8 with 1 = pet, 2 = background, 3 = border."""
    trimap = _read_image(path, lambda image: np.array(image, dtype=np.uint8))
    if trimap.ndim != 2 or trimap.min() < 1 or trimap.max() > 3:
        raise ValueError(f"{path} is not a trimap (expected one channel with values 1, 2, 3).")
    return trimap


def trimap_to_mask(trimap: np.ndarray, border: str = "pet") -> np.ndarray:
    """Binary mask from trimap values; the border band counts as pet unless told otherwise.

    Args:
        trimap: uint8 array of any shape with values 1 (pet), 2 (background), 3 (border).
        border: "pet" (border -> 1), "background" (-> 0) or "ignore" (-> IGNORE_INDEX, left out
            of losses and metrics).
    """
    if border not in BORDER_MODES:
        raise ValueError(f"Unknown border mode {border!r}; choose one of {BORDER_MODES}.")
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[1] = 1
    lookup[3] = {"pet": 1, "background": 0, "ignore": IGNORE_INDEX}[border]
    return lookup[np.asarray(trimap, dtype=np.uint8)]


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
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    trimaps = np.empty((len(samples), size, size), dtype=np.uint8)

    def decode(index: int) -> tuple[int, int]:
        sample = samples[index]
        try:
            photo = load_rgb(sample.image_path)
            trimap = Image.fromarray(load_trimap(sample.trimap_path))
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(f"{error} (listed in {split_file} as {sample.name})") from error
        images[index] = np.asarray(resize_photo(photo, size))
        trimaps[index] = np.asarray(trimap.resize((size, size), Image.Resampling.NEAREST))
        return photo.height, photo.width

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        decoded = pool.map(decode, range(len(samples)))
        original_sizes = list(tqdm(decoded, total=len(samples), desc=description, disable=not progress))
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, don't wait for thousands of decodes
    return images, trimaps, original_sizes


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Write to a temporary file then rename, so an interrupted run never leaves a half cache."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        np.save(file, array)
    os.replace(temporary, path)


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
            whenever the root, size or any listed file (name, byte size, mtime) changes.
        progress: show a progress bar while decoding.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    root = resolve_root(root)
    samples = read_split(root, split)
    split_file = split_file_path(root, split)
    fingerprint = _fingerprint(root, samples, size, split_file)
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    stem = folder / f"{root.name}-{split}-{size}px-{fingerprint[:16]}"
    files = {part: stem.with_name(f"{stem.name}.{part}.npy") for part in ("images", "trimaps", "sizes")}
    if all(path.is_file() for path in files.values()):
        images, trimaps, sizes = (np.load(path) for path in files.values())
        original_sizes = [(int(height), int(width)) for height, width in sizes]
    else:
        description = f"decoding {split} ({root.name}, {size}px)"
        images, trimaps, original_sizes = _decode_split(samples, size, split_file, progress, description)
        folder.mkdir(parents=True, exist_ok=True)
        _save_atomically(files["images"], images)
        _save_atomically(files["trimaps"], trimaps)
        # Written last, so its presence means the whole cache is complete.
        _save_atomically(files["sizes"], np.array(original_sizes, dtype=np.int64).reshape(-1, 2))
    return SplitArrays(images, trimaps, samples, original_sizes, fingerprint)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization; every model input in labkit goes through this one function.

    Args:
        images: (B, 3, H, W), uint8 in [0, 255] or float in [0, 1].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"Expected images of shape (B, 3, H, W), got {tuple(images.shape)}.")
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def to_tensors(
    arrays: SplitArrays, border: str = "pet", device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) uint8 and masks (N, H, W) uint8 on `device`.

    On CUDA the images stay channels_last (the cache's own layout, and what tensor cores want);
    elsewhere they are made contiguous, since CPU convolutions run about 10x slower channels_last.
    """
    device = torch.device(device)
    images = torch.from_numpy(arrays.images).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    if device.type != "cuda":
        images = images.contiguous()
    masks = torch.from_numpy(arrays.masks(border))
    return images.to(device), masks.to(device)


class PetSegmentation(torch.utils.data.Dataset):
    """The classic Dataset form, for teaching: reads one photo per item and applies
    torchvision.transforms.v2, which treat a tv_tensors.Mask with nearest interpolation.

    Returns (image float (3, H, W) in [0, 1], Mask (H, W) uint8 after `trimap_to_mask`).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        size: int | None = DEFAULT_SIZE,
        border: str = "pet",
        transforms: Callable | None = None,
    ):
        """Args: size None keeps each photo's own size; transforms (a v2 transform) run after the
        resize on (image uint8, mask) together, so random crops and flips keep them aligned."""
        from torchvision.transforms import v2

        self.samples = read_split(root, split)
        self.border = border
        resize = [v2.Resize((size, size), antialias=True)] if size else []
        extra = [transforms] if transforms is not None else []
        self.transforms = v2.Compose([*resize, *extra, v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        sample = self.samples[index]
        photo = torch.from_numpy(np.array(load_rgb(sample.image_path)))  # (H, W, 3)
        image = tv_tensors.Image(photo.permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(trimap_to_mask(load_trimap(sample.trimap_path), self.border)))
        return self.transforms(image, mask)
