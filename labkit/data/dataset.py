"""The classic per-item Dataset, for teaching torchvision.transforms.v2 on photo and mask pairs."""

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from labkit.data.images import DEFAULT_SIZE, load_pair, trimap_to_mask
from labkit.data.splits import read_split


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
        photo, trimap = load_pair(sample.image_path, sample.trimap_path)
        image = tv_tensors.Image(torch.from_numpy(np.array(photo)).permute(2, 0, 1))  # (H, W, 3) -> (3, H, W)
        mask = tv_tensors.Mask(torch.from_numpy(trimap_to_mask(trimap, self.border)))
        return self.transforms(image, mask)
