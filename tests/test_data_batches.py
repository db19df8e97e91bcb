"""labkit.data.batches: arrays to tensors, and the ImageNet normalization."""

import numpy as np
import pytest
import torch

from labkit.data.batches import IMAGENET_MEAN, IMAGENET_STD, normalize, to_tensors
from labkit.data.cache import load_split

from fake_pets import fake_root  # noqa: F401 (a fixture)

def test_uint8_and_float_images_normalize_alike():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(normalize(images), normalize(images.float() / 255))


def test_normalize_maps_the_imagenet_mean_to_zero_and_one_std_to_one():
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = torch.cat([mean, mean + std]).expand(2, 3, 4, 4)
    normalized = normalize(images)
    assert normalized.dtype == torch.float32
    torch.testing.assert_close(normalized[0], torch.zeros(3, 4, 4))
    torch.testing.assert_close(normalized[1], torch.ones(3, 4, 4))


def test_normalize_rejects_images_that_are_not_batched_rgb():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normalize(torch.zeros(3, 8, 8))


def test_to_tensors_puts_channels_first_and_keeps_uint8(fake_root):
    arrays = load_split(fake_root, "test", size=16, progress=False)
    images, masks = to_tensors(arrays, border="ignore")
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8
    assert masks.shape == (3, 16, 16) and masks.dtype == torch.uint8
    np.testing.assert_array_equal(images[1, 2].numpy(), arrays.images[1, :, :, 2])
    np.testing.assert_array_equal(masks.numpy(), arrays.masks("ignore"))


def test_normalize_builds_its_constants_once_per_device(monkeypatch):
    """Building them from Python numbers on every call is a host-to-device copy per step on a GPU."""
    from labkit.data import batches

    batches.normalization_constants.cache_clear()
    made = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *args, **kwargs: made.append(args) or real_tensor(*args, **kwargs))
    for _ in range(3):
        normalize(torch.rand(2, 3, 4, 4))
    assert len(made) == 2  # mean and std, once
