"""From decoded arrays to model input: tensors on a device, and the ImageNet normalization."""

import functools

import torch

from labkit.data.cache import SplitArrays
from labkit.device import memory_format_for

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization; every model input in labkit goes through this one function.

    Args:
        images: (B, 3, H, W), uint8 in [0, 255] or float in [0, 1].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"Expected images of shape (B, 3, H, W), got {tuple(images.shape)}.")
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    mean, std = normalization_constants(images.device)
    return (images - mean) / std


@functools.cache
def normalization_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std as (1, 3, 1, 1) tensors, made once per device: building them from Python
    numbers on every call is a host-to-device copy that makes each training step wait for the GPU."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def to_tensors(
    arrays: SplitArrays, border: str = "pet", device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) uint8 and masks (N, H, W) uint8 on `device`.

    The images are laid out as models on that device want their inputs (`labkit.device.memory_format_for`):
    channels_last, the cache's own layout, on CUDA and the CPU.
    """
    device = torch.device(device)
    images = torch.from_numpy(arrays.images).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    images = images.contiguous(memory_format=memory_format_for(device))
    masks = torch.from_numpy(arrays.masks(border))
    return images.to(device), masks.to(device)
