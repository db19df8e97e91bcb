"""Augmentation: photo and mask move together, labels stay labels, seeds reproduce."""

import math

import pytest
import torch
import torch.nn.functional as F

from labkit.augment import AugmentConfig, augment_batch, random_affine_matrices
from labkit.metrics import IGNORE_INDEX

GEOMETRY_ONLY = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_blobs(batch_size: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """bool (B, H, W) smooth random blobs: blurred, upsampled noise thresholded at its median."""
    noise = torch.randn(batch_size, 1, size // 8, size // 8, generator=seeded(seed))
    smooth = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    return smooth > smooth.flatten(1).median(dim=1).values.view(-1, 1, 1)


def photo_batch(batch_size: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(batch_size, 3, size, size, generator=seeded(1))
    masks = random_blobs(batch_size, size).to(torch.uint8)
    masks[:, :2] = IGNORE_INDEX  # a band of ignored pixels, as with border="ignore"
    return images, masks


def test_shapes_dtypes_and_device_are_preserved():
    images, masks = photo_batch()
    out_images, out_masks = augment_batch(images, masks, AugmentConfig(), seeded())
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert out_masks.shape == masks.shape and out_masks.dtype == masks.dtype
    assert out_images.device == images.device and out_masks.device == masks.device


def test_non_square_images_keep_their_shape():
    images, masks = torch.rand(2, 3, 48, 80), torch.zeros(2, 48, 80, dtype=torch.uint8)
    out_images, out_masks = augment_batch(images, masks, AugmentConfig(), seeded())
    assert out_images.shape == (2, 3, 48, 80) and out_masks.shape == (2, 48, 80)


def test_mask_values_stay_within_the_input_labels():
    images, masks = photo_batch()
    _, out_masks = augment_batch(images, masks, AugmentConfig(strength=2.0), seeded())
    assert set(out_masks.unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_images_stay_in_unit_range():
    images, masks = photo_batch()
    out_images, _ = augment_batch(images, masks, AugmentConfig(strength=2.0), seeded())
    assert out_images.min() >= 0 and out_images.max() <= 1


def test_strength_zero_returns_the_inputs_untouched():
    images, masks = photo_batch()
    out_images, out_masks = augment_batch(images, masks, AugmentConfig(strength=0.0), seeded())
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)


def test_image_and_mask_are_transformed_identically():
    # The same blob is drawn as the photo (all three channels) and as the mask; after the
    # geometric augmentation the photo thresholded at 0.5 must still be the mask, except along
    # the outline where bilinear and nearest resampling may round differently. Colour jitter is
    # off: it would move the photo's values away from 0 and 1.
    blobs = random_blobs(8)
    images = blobs[:, None].float().expand(-1, 3, -1, -1).contiguous()
    out_images, out_masks = augment_batch(images, blobs.to(torch.uint8), GEOMETRY_ONLY, seeded())
    agreement = ((out_images[:, 0] > 0.5) == out_masks.bool()).float().mean(dim=(1, 2))
    assert agreement.min().item() >= 0.98


def test_augmentation_really_moves_the_mask():
    blobs = random_blobs(8).to(torch.uint8)
    images = blobs[:, None].float().expand(-1, 3, -1, -1)
    _, out_masks = augment_batch(images, blobs, GEOMETRY_ONLY, seeded())
    assert (out_masks != blobs).float().mean().item() > 0.05


def test_seeded_generator_reproduces_the_augmentation():
    images, masks = photo_batch()
    first = augment_batch(images, masks, AugmentConfig(), seeded(7))
    second = augment_batch(images, masks, AugmentConfig(), seeded(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_different_seeds_give_different_augmentations():
    images, masks = photo_batch()
    first, _ = augment_batch(images, masks, AugmentConfig(), seeded(7))
    second, _ = augment_batch(images, masks, AugmentConfig(), seeded(8))
    assert not torch.equal(first, second)


def test_each_sample_in_a_batch_gets_its_own_transform():
    image = torch.rand(1, 3, 32, 32, generator=seeded(2))
    images = image.expand(6, -1, -1, -1).contiguous()
    masks = random_blobs(1, 32).to(torch.uint8).expand(6, -1, -1).contiguous()
    out_images, _ = augment_batch(images, masks, AugmentConfig(), seeded())
    flat = out_images.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(6, dtype=torch.bool)]
    assert off_diagonal.min().item() > 0


def test_pure_horizontal_flip_mirrors_the_image():
    # With every range at 0 only the flip is left: each sample is either unchanged or mirrored.
    config = AugmentConfig(max_rotation_degrees=0, min_scale=1, max_aspect_change=0, brightness=0, contrast=0, saturation=0)
    images = torch.rand(16, 3, 8, 8, generator=seeded(3))
    out_images, _ = augment_batch(images, torch.zeros(16, 8, 8, dtype=torch.uint8), config, seeded())
    unchanged = (out_images - images).abs().flatten(1).amax(dim=1) < 1e-5
    mirrored = (out_images - images.flip(-1)).abs().flatten(1).amax(dim=1) < 1e-5
    assert torch.all(unchanged | mirrored) and unchanged.any() and mirrored.any()


def test_rotation_on_non_square_image_keeps_right_angles():
    # The matrix is built in pixel units: its linear part, rescaled to pixels, must be a rotation
    # times the crop scales, so the two pixel-space columns stay perpendicular.
    config = AugmentConfig(hflip=False, max_aspect_change=0.0)
    theta = random_affine_matrices(16, 40, 100, config, seeded())
    to_pixels = torch.diag(torch.tensor([100 / 2, 40 / 2]))
    linear = to_pixels @ theta[:, :, :2] @ torch.linalg.inv(to_pixels)
    dot = (linear[:, :, 0] * linear[:, :, 1]).sum(dim=1)
    assert dot.abs().max().item() < 1e-4
    angles = torch.atan2(linear[:, 1, 0], linear[:, 0, 0]).abs()
    assert angles.max().item() <= math.radians(15) + 1e-6


def test_colour_jitter_leaves_the_mask_alone():
    config = AugmentConfig(max_rotation_degrees=0, min_scale=1, max_aspect_change=0, hflip=False)
    images, masks = photo_batch()
    out_images, out_masks = augment_batch(images, masks, config, seeded())
    assert torch.equal(out_masks, masks)
    assert not torch.allclose(out_images, images)


def test_uint8_images_are_rejected_with_a_fix():
    with pytest.raises(ValueError, match="float"):
        augment_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8, dtype=torch.uint8), AugmentConfig())


def test_masks_of_another_size_are_rejected():
    with pytest.raises(ValueError, match="masks"):
        augment_batch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 4, dtype=torch.uint8), AugmentConfig())


@pytest.mark.parametrize("field, value", [("strength", -1.0), ("min_scale", 0.0), ("brightness", -0.1)])
def test_invalid_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seeded_cpu_generator_gives_the_same_transform_on_cuda():
    images, masks = photo_batch()
    cpu = augment_batch(images, masks, GEOMETRY_ONLY, seeded(5))
    cuda = augment_batch(images.cuda(), masks.cuda(), GEOMETRY_ONLY, seeded(5))
    assert cuda[0].is_cuda and cuda[1].dtype == torch.uint8
    assert torch.allclose(cuda[0].cpu(), cpu[0], atol=1e-4)
    assert (cuda[1].cpu() == cpu[1]).float().mean().item() > 0.99


def test_the_callers_batch_is_not_modified():
    images, masks = photo_batch()
    images_before, masks_before = images.clone(), masks.clone()
    augment_batch(images, masks, AugmentConfig(strength=2.0), seeded())
    assert torch.equal(images, images_before) and torch.equal(masks, masks_before)


def drawn_angles_and_crops(strength: float, count: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles (degrees) and crop sides of many square-image draws, read back from theta."""
    theta = random_affine_matrices(count, 32, 32, AugmentConfig(strength=strength, max_aspect_change=0.0),
                                   torch.Generator().manual_seed(0))
    # Without an aspect change, theta[:, :, :2] = crop * rotation(angle) (times the flip on column 0).
    angles = torch.rad2deg(torch.atan2(theta[:, 0, 1].neg(), theta[:, 1, 1]))
    crops = torch.hypot(theta[:, 0, 1], theta[:, 1, 1])
    return angles, crops


@pytest.mark.parametrize("strength", [0.5, 1.0, 1.5])
def test_effective_ranges_state_what_augment_batch_draws(strength):
    from labkit.augment import effective_ranges

    angles, crops = drawn_angles_and_crops(strength)
    ranges = effective_ranges(AugmentConfig(strength=strength))
    limit, smallest = 15 * strength, 1 - 0.4 * min(strength, 1.0)
    assert ranges["rotation"] == f"±{limit:g}°"
    assert ranges["zoom (crop side)"] == f"{smallest:.0%} to 100% of the image"
    assert angles.abs().max() <= limit + 1e-3 and angles.abs().max() > 0.98 * limit
    assert crops.min() >= smallest - 1e-4 and crops.min() < smallest + 0.01
    assert ranges["left-right flip"] == "probability 0.5"  # the flip is not scaled by the strength
    assert ranges["brightness factor"] == f"{1 - 0.3 * strength:.3g} to {1 + 0.3 * strength:.3g}"


def test_effective_ranges_say_when_augmentation_is_off():
    from labkit.augment import effective_ranges

    assert effective_ranges(AugmentConfig(strength=0)) == {"augmentation": "off (strength 0)"}
