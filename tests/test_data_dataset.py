"""labkit.data.dataset: the per-item PetSegmentation Dataset."""

import pytest
import torch
from PIL import Image

from labkit.data.dataset import PetSegmentation

from fake_pets import fake_root, pet_trimap  # noqa: F401 (fake_root is a fixture)

def test_pet_segmentation_dataset_returns_a_float_image_and_a_binary_mask(fake_root):
    from torchvision import tv_tensors

    image, mask = PetSegmentation(fake_root, "test", size=16)[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert isinstance(mask, tv_tensors.Mask) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) == {0, 1}


def test_pet_segmentation_refuses_a_trimap_of_another_size_than_its_photo(fake_root):
    Image.fromarray(pet_trimap(50, 30)).save(fake_root / "annotations" / "trimaps" / "Tabby_23.png")
    with pytest.raises(ValueError, match=r"Tabby_23\.png is 50x30 but its photo .*Tabby_23\.jpg is 63x33"):
        PetSegmentation(fake_root, "test", size=None)[0]
