"""One photo or one trimap from disk: any format the release holds, and trimaps as masks."""

from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from PIL import Image, ImageOps

from labkit.data.roots import FIX_HINT
from labkit.files import not_a_file

# The label of a pixel that counts nowhere (the trimap border, when it is ignored). Defined here, where
# masks are made; labkit.metrics and labkit.losses import it.
IGNORE_INDEX = 255
DEFAULT_SIZE = 256  # side of the square photos and trimaps are resized to unless told otherwise
BORDER_MODES = ("pet", "background", "ignore")

T = TypeVar("T")


def _read_image(path: str | Path, convert: Callable[[Image.Image], T]) -> T:
    """Decode an image with `convert` while the file is open, turning every failure into an error
    that names the file."""
    path = Path(path)
    kind = not_a_file(path)
    if kind is not None:  # opening a FIFO would wait forever
        raise ValueError(f"{path} is {kind}, not an image file; put the photo itself there, or remove its name")
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
    """Any PIL image as RGB (palettes with transparency go through RGBA first). An RGB image is
    returned as it is, decoded, not copied: a 100-megapixel photo takes 400 MB in memory."""
    if image.mode == "RGB":
        image.load()  # now, while the caller still has the file open
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # converting such palettes straight to RGB warns
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Load a dataset photo as RGB on its stored pixel grid: the release has RGBA PNGs, palette
    GIFs, grayscale and CMYK JPEGs, some of them named .jpg (PIL detects the real format from the
    file's content).

    No EXIF rotation: the trimaps were drawn on the stored pixel grid. In the 303 photos of the
    shared sample, 9 carry an orientation tag (0x0112): 8 say 1 (as stored) and Abyssinian_17 says
    0 (undefined, which exif_transpose also leaves alone); none asks for a rotation, and every
    trimap has its photo's stored size. A rotated trimap would not match the stored size and is
    refused by `load_pair`.
    """
    return _read_image(path, to_rgb)


def load_rgb_as_displayed(path: str | Path) -> Image.Image:
    """Load a user's photo as RGB the way viewers show it, turned by its EXIF orientation:
    phones store the sensor's pixel grid and record the rotation in the tag."""
    return _read_image(path, displayed_rgb)


def displayed_rgb(image: Image.Image) -> Image.Image:
    """`image` turned by its EXIF orientation, as RGB; turned in place, so an unturned photo is
    never copied."""
    ImageOps.exif_transpose(image, in_place=True)
    return to_rgb(image)


def resize_photo(photo: Image.Image, size: int) -> Image.Image:
    """A photo as the model sees it: size x size, bilinear (PIL's bilinear filter widens with the
    reduction factor, so shrinking is antialiased). Training and inference both use this."""
    return photo.resize((size, size), Image.Resampling.BILINEAR)


def resize_trimap(trimap: np.ndarray, size: int) -> np.ndarray:
    """A trimap at size x size, nearest neighbour so that it keeps only the values 1, 2, 3."""
    return np.asarray(Image.fromarray(trimap).resize((size, size), Image.Resampling.NEAREST))


def load_trimap(path: str | Path) -> np.ndarray:
    """Load a trimap as (H, W) uint8 with 1 = pet, 2 = background, 3 = border."""
    trimap = _read_image(path, lambda image: np.array(image, dtype=np.uint8))
    if trimap.ndim != 2 or trimap.min() < 1 or trimap.max() > 3:
        raise ValueError(f"{path} is not a trimap (expected one channel with values 1, 2, 3).")
    return trimap


def load_pair(image_path: str | Path, trimap_path: str | Path) -> tuple[Image.Image, np.ndarray]:
    """A photo (RGB) and its trimap (H, W), refusing a trimap that does not cover the photo pixel
    for pixel: resizing both to a square would hide the mismatch until evaluation at original size."""
    photo, trimap = load_rgb(image_path), load_trimap(trimap_path)
    if trimap.shape != (photo.height, photo.width):
        height, width = trimap.shape
        raise ValueError(
            f"{trimap_path} is {width}x{height} but its photo {image_path} is "
            f"{photo.width}x{photo.height} (width x height). Re-download the annotations, or remove "
            "the photo's line from the split files."
        )
    return photo, trimap


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
