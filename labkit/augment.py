"""Batched data augmentation that runs on whatever device the batch is on.

Every sample gets its own random flip, rotation, zoom (a random resized crop) and shift, combined
into one affine matrix and applied with a single `affine_grid` + `grid_sample` call, so the
image and its mask are resampled on exactly the same grid: bilinear for the photo, nearest for
the mask (labels must not be blended), reflection padding for both. Colour jitter touches the
photo only. Random numbers are drawn on the CPU with the given generator and then moved to the
device, so a seeded CPU generator gives the same augmentations on a GPU.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# The luma weights torchvision's rgb_to_grayscale uses (ITU-R 601, rounded as there).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass
class AugmentConfig:
    """Ranges of the random augmentations; `strength` scales all of them (0 = off).

    Args:
        strength: multiplies every range below; 0 returns the batch untouched.
        hflip: mirror left-right with probability 0.5 (when strength > 0).
        max_rotation_degrees: rotation drawn from +- this angle.
        min_scale: smallest crop side as a fraction of the image, i.e. zoom up to 1 / min_scale
            (strengths above 1 do not zoom further, so the crop never vanishes).
        max_aspect_change: crop aspect ratio drawn log-uniformly in [1/(1+a), 1+a].
        brightness, contrast, saturation: colour factors drawn from 1 +- this value.
    """

    strength: float = 1.0
    hflip: bool = True
    max_rotation_degrees: float = 15.0
    min_scale: float = 0.6
    max_aspect_change: float = 0.1
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3

    def __post_init__(self) -> None:
        if self.strength < 0:
            raise ValueError(f"AugmentConfig.strength must be >= 0 (0 turns augmentation off), got {self.strength}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"AugmentConfig.min_scale must be in (0, 1], got {self.min_scale}")
        for name in ("max_rotation_degrees", "max_aspect_change", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")


def effective_ranges(config: AugmentConfig) -> dict[str, str]:
    """What `augment_batch` draws at this strength, range by range, in words (for tables).

    `strength` scales every range except the flip, which stays a coin toss whenever strength > 0;
    the zoom stops growing at strength 1 (see `AugmentConfig`).
    """
    strength = config.strength
    if strength == 0:
        return {"augmentation": "off (strength 0)"}
    crop = 1 - (1 - config.min_scale) * min(strength, 1.0)
    aspect = 1 + config.max_aspect_change * strength
    ranges = {
        "left-right flip": "probability 0.5" if config.hflip else "never",
        "rotation": f"±{config.max_rotation_degrees * strength:g}°",
        "zoom (crop side)": f"{crop:.0%} to 100% of the image",
        "crop aspect ratio": f"1/{aspect:.3g} to {aspect:.3g}",
    }
    for name in ("brightness", "contrast", "saturation"):
        spread = getattr(config, name) * strength
        ranges[f"{name} factor"] = f"{max(0.0, 1 - spread):.3g} to {1 + spread:.3g}"
    return ranges


def _to_device_of(values: Tensor, batch: Tensor) -> Tensor:
    """Move CPU random draws to the batch's device and dtype. On CUDA they go through pinned
    memory without blocking, so the CPU does not wait for the GPU at every batch."""
    if batch.device.type == "cuda":
        values = values.pin_memory()
    return values.to(device=batch.device, dtype=batch.dtype, non_blocking=True)


def _uniform(size: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def random_affine_matrices(
    batch_size: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> Tensor:
    """One (2, 3) matrix per sample mapping output to input coordinates, for `F.affine_grid`.

    Built in pixel units, so a rotation stays a rotation on non-square images.
    """
    strength = config.strength
    flip = torch.ones(batch_size)
    if config.hflip:
        flip = torch.where(torch.rand(batch_size, generator=generator) < 0.5, -1.0, 1.0)
    angle_limit = math.radians(config.max_rotation_degrees * strength)
    angle = _uniform(batch_size, -angle_limit, angle_limit, generator)
    scale = _uniform(batch_size, 1 - (1 - config.min_scale) * min(strength, 1.0), 1.0, generator)
    log_aspect_limit = math.log1p(config.max_aspect_change * strength)
    aspect = torch.exp(_uniform(batch_size, -log_aspect_limit, log_aspect_limit, generator))
    crop_x = (scale * aspect.sqrt()).clamp(max=1.0)  # crop width / image width
    crop_y = (scale / aspect.sqrt()).clamp(max=1.0)
    # The crop centre moves anywhere that keeps the (unrotated) crop inside the image.
    shift_x = _uniform(batch_size, -1.0, 1.0, generator) * (1 - crop_x)
    shift_y = _uniform(batch_size, -1.0, 1.0, generator) * (1 - crop_y)

    cos, sin = torch.cos(angle), torch.sin(angle)
    half_w, half_h = width / 2, height / 2
    # theta = to_normalized @ rotation @ to_pixels @ crop @ flip, written out per entry.
    theta = torch.zeros(batch_size, 2, 3)
    theta[:, 0, 0] = cos * crop_x * flip
    theta[:, 0, 1] = -sin * crop_y * half_h / half_w
    theta[:, 1, 0] = sin * crop_x * flip * half_w / half_h
    theta[:, 1, 1] = cos * crop_y
    theta[:, 0, 2] = shift_x
    theta[:, 1, 2] = shift_y
    return theta


def _grayscale(images: Tensor) -> Tensor:
    red, green, blue = images.unbind(1)
    gray = GRAY_WEIGHTS[0] * red + GRAY_WEIGHTS[1] * green + GRAY_WEIGHTS[2] * blue
    return gray.unsqueeze(1)  # (B, 1, H, W)


def color_jitter(images: Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample brightness, then contrast, then saturation, as torchvision's ColorJitter does."""
    batch_size = images.shape[0]

    def factors(amount: float) -> Tensor:
        spread = amount * config.strength
        drawn = _uniform(batch_size, max(0.0, 1 - spread), 1 + spread, generator)
        return _to_device_of(drawn, images).view(-1, 1, 1, 1)

    brightness, contrast, saturation = (factors(a) for a in (config.brightness, config.contrast, config.saturation))
    # Each step makes a new tensor, so clamping it in place never touches the caller's batch.
    images = (images * brightness).clamp_(0, 1)
    mean_gray = _grayscale(images).mean(dim=(2, 3), keepdim=True)
    images = (mean_gray + contrast * (images - mean_gray)).clamp_(0, 1)
    gray = _grayscale(images)
    return (gray + saturation * (images - gray)).clamp_(0, 1)


def augment_batch(
    images: Tensor, masks: Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Randomly flip, rotate, zoom, shift and colour-jitter a batch, each sample differently.

    Args:
        images: float (B, 3, H, W) in [0, 1], on any device.
        masks: (B, H, W) labels (e.g. uint8 in {0, 1, 255}); resampled with nearest
            neighbour, so no new label values appear.
        config: the augmentation ranges.
        generator: a CPU `torch.Generator` for reproducible draws (None: the global RNG).

    Returns:
        (images, masks) with the same shapes, dtypes and device as the inputs.
    """
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (B, 3, H, W) in [0, 1], got {images.dtype} {tuple(images.shape)}; "
            "convert uint8 photos with images.float() / 255"
        )
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"masks {tuple(masks.shape)} must be (B, H, W) to match images {tuple(images.shape)}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("pass a CPU torch.Generator; random draws are made on the CPU and moved to the device")
    if config.strength == 0:
        return images, masks

    batch_size, _, height, width = images.shape
    theta = random_affine_matrices(batch_size, height, width, config, generator)
    theta = _to_device_of(theta, images)
    grid = F.affine_grid(theta, [batch_size, 1, height, width], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    labels = masks[:, None].to(grid.dtype)
    labels = F.grid_sample(labels, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    masks = labels[:, 0].round().to(masks.dtype)
    if config.brightness or config.contrast or config.saturation:
        images = color_jitter(images, config, generator)
    return images, masks
