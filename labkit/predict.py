"""Masks for your own photos: any size, mode or format Pillow reads, returned at the photo's size.

Each photo is resized to the square the model was trained on, exactly as the training cache
resizes it, and the logits are resized back bilinearly to the photo's own size before the
sigmoid and the threshold, as `evaluate` does at original resolution. Files that cannot be read
are reported and skipped, so one broken download never stops a folder of predictions.

A photo of any size is held once (Pillow keeps RGB at 4 bytes a pixel), with its probabilities (4)
and mask (1), and one output picture at a time, each written whole: about 9 bytes a pixel at the
peak, where float copies of the whole photo took 53 to 64. Pillow refuses photos over about 179
megapixels (twice `Image.MAX_IMAGE_PIXELS`) as decompression bombs.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from labkit import data
from labkit.checkpoint import ModelSource, model_and_info, trained_image_size
from labkit.errors import one_line
from labkit.evaluate import evaluation_mode, predict_logits
from labkit.files import writable_folder, write_atomically

# DecompressionBombError (a photo of hundreds of megapixels) is not an OSError.
UNREADABLE = (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError)
BAND_PIXELS = 1 << 20  # pixels tinted at a time, so a float copy of a band stays about 12 MB
OUTPUT_FIX = "free some space or choose another folder with --output"


@dataclass
class PredictionReport:
    """What `predict_files` wrote, and which inputs it skipped and why."""

    written: list[dict] = field(default_factory=list)  # source, mask, overlay, cutout, pet_fraction
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (path, one-line reason)


def image_extensions() -> set[str]:
    """Lower-case extensions (".jpg", ".png", ...) of every format this Pillow can open."""
    return {extension.lower() for extension, format_name in Image.registered_extensions().items()
            if format_name in Image.OPEN}


def as_paths(inputs: list[str | Path] | str | Path) -> list[Path]:
    """One path or a list of them, as a list of Paths."""
    return [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(path) for path in inputs]


def find_images(inputs: list[str | Path] | str | Path) -> list[Path]:
    """The photos to predict: files as given, and each folder's image files (not its subfolders).

    Folder contents are sorted by name; hidden files are skipped, among them the `._*` AppleDouble
    files macOS leaves beside every photo on a shared drive. A file named explicitly is kept
    whatever its extension, so that a broken one is reported rather than silently ignored.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    extensions = image_extensions()
    found = []
    for path in as_paths(inputs):
        if path.is_dir():
            found += sorted(child for child in path.iterdir() if child.is_file()
                            and not child.name.startswith(".") and child.suffix.lower() in extensions)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist; give image files or folders that hold them")
    return list(dict.fromkeys(found))  # drops repeats, keeps order


@torch.inference_mode()
def predict_probability(model: nn.Module, image: Image.Image, image_size: int, tta: bool = False) -> np.ndarray:
    """Pet probability (H, W) float32 at the photo's own size.

    Args:
        model: any labkit model; it runs on its own device and its train/eval mode is restored.
        image: a photo of any mode (converted to RGB; `data.load_rgb` reads files safely).
        image_size: the side of the square the model was trained on.
        tta: also predict the mirror image and average the logits.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (the training size), got {image_size!r}")
    rgb = data.to_rgb(image)
    pixels = np.array(data.resize_photo(rgb, image_size))  # (S, S, 3) uint8, writable
    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, S, S)
    with evaluation_mode(model):
        logits = predict_logits(model, batch, tta=tta)  # (1, 1, S, S)
    # Resize logits, not probabilities or masks, as evaluate does at original resolution. In
    # place, so a huge photo holds one float per pixel here, not three.
    logits = F.interpolate(logits, size=(rgb.height, rgb.width), mode="bilinear", align_corners=False)
    return torch.sigmoid_(logits)[0, 0].cpu().numpy()


def check_mask(image: Image.Image, mask: np.ndarray) -> np.ndarray:
    """The mask as a bool (H, W) array (not copied if it is one), refusing one that does not
    match the photo."""
    mask = np.asarray(mask)
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask of shape {mask.shape} does not match the photo's (height, width) = "
                         f"{(image.height, image.width)}; predict at the photo's own size")
    return np.asarray(mask, dtype=bool)


def row_bands(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes of whole rows, about BAND_PIXELS each, covering the image from top to bottom."""
    rows = max(1, BAND_PIXELS // image.width)
    return [(0, top, image.width, min(top + rows, image.height)) for top in range(0, image.height, rows)]


def overlay(image: Image.Image, mask: np.ndarray, color: tuple[int, int, int] = (0, 110, 255),
            alpha: float = 0.5) -> Image.Image:
    """The photo with the predicted pet tinted in `color` (blue: no coat is blue), to judge a mask at a glance.

    Args:
        mask: (H, W), nonzero or True where the pet is.
        alpha: how strongly the tint covers the pet, 0 (invisible) to 1 (opaque).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    pet = check_mask(image, mask)
    rgb = data.to_rgb(image)
    tinted = Image.new("RGB", rgb.size)
    tint = alpha * np.array(color, dtype=np.float32)
    for box in row_bands(rgb):  # a band at a time: float copies of a whole huge photo take gigabytes
        pixels = np.asarray(rgb.crop(box), dtype=np.float32)
        band_pet = pet[box[1] : box[3]]
        pixels[band_pet] = (1 - alpha) * pixels[band_pet] + tint
        tinted.paste(Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB"), box[:2])
    return tinted


def cutout(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The pet on a transparent background: RGBA with alpha 255 on the pet and 0 elsewhere."""
    pet = check_mask(image, mask)
    rgba = data.to_rgb(image).convert("RGBA")
    rgba.putalpha(mask_image(pet))
    return rgba


def mask_image(mask: np.ndarray) -> Image.Image:
    """A bool mask as a grayscale image: 255 on the pet, 0 elsewhere."""
    return Image.fromarray(np.multiply(mask, 255, dtype=np.uint8), mode="L")


def output_stems(sources: list[Path]) -> list[str]:
    """A distinct output name per source: its stem, or `<stem>-2`, `-3`... for a later photo with
    the same stem (same name in another folder, or another extension).

    Compared case-insensitively, because macOS and Windows file systems are.
    """
    own = {source.stem.lower() for source in sources}
    used, stems = set(), []
    for source in sources:
        stem, number = source.stem, 1
        while stem.lower() in used or (number > 1 and stem.lower() in own):
            number += 1
            stem = f"{source.stem}-{number}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def unreadable_reason(error: Exception) -> str:
    """Why a photo could not be read, in one line. The loader's own advice is about the dataset's
    split files, which does not apply to a user's photo, so the underlying cause is reported."""
    return "not a readable image: " + one_line(error.__cause__ or error)


def write_outputs(image: Image.Image, mask: np.ndarray, output_dir: Path, stem: str) -> dict:
    """Save the mask (L, 0/255), the overlay and the cutout as PNGs; return their paths. Each is
    made, written whole (`labkit.files.write_atomically`) and let go before the next is made."""
    makers = {"mask": lambda: mask_image(check_mask(image, mask)), "overlay": lambda: overlay(image, mask),
              "cutout": lambda: cutout(image, mask)}
    paths = {kind: output_dir / f"{stem}_{kind}.png" for kind in makers}
    for kind, make in makers.items():
        save_png(make(), paths[kind])
    return paths


def save_png(picture: Image.Image, path: Path) -> None:
    """Write `picture` to `path` as a PNG, so that Ctrl-C or a full disk leaves no half-written file."""
    write_atomically(path, lambda file: picture.save(file, format="PNG"), OUTPUT_FIX)


def predict_files(source: ModelSource, inputs: list[str | Path] | str | Path,
                  output_dir: str | Path, *, threshold: float = 0.5, image_size: int | None = None,
                  tta: bool = False, device: str = "auto", progress: bool = True) -> PredictionReport:
    """Predict every photo among `inputs` and write `<stem>_mask.png`, `<stem>_overlay.png` and
    `<stem>_cutout.png` at its original size into `output_dir`.

    Args:
        source: the path of a labkit checkpoint (loaded onto `device`), a `TrainedModel`, or a
            model (used on its own device; then `image_size` is required).
        inputs: image files and folders, see `find_images`.
        threshold: a pixel is pet where its probability is above this.
        image_size: defaults to the checkpoint's training size.
        tta: average with the prediction for the mirror image.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a probability between 0 and 1, got {threshold}")
    sources = find_images(inputs)
    if not sources:
        names = ", ".join(map(str, as_paths(inputs)))
        raise ValueError(f"no image files found in {names}; give photos or folders that hold them")
    model, trained = model_and_info(source, device)
    image_size = trained_image_size(trained, image_size)
    output_dir = writable_folder(Path(output_dir), "predictions", OUTPUT_FIX)

    report = PredictionReport()
    for source, stem in tqdm(list(zip(sources, output_stems(sources))), desc="predict", disable=not progress):
        try:
            image = data.load_rgb_as_displayed(source)  # a phone photo as its EXIF orientation shows it
        except UNREADABLE as error:
            report.failed.append((source, unreadable_reason(error)))
            continue
        mask = predict_probability(model, image, image_size, tta) > threshold  # the probabilities go at once
        written = write_outputs(image, mask, output_dir, stem)
        report.written.append({"source": source, **written, "pet_fraction": float(mask.mean())})
    return report
