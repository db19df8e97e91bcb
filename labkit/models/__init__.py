"""The lab's two segmentation models, built by name so configs and checkpoints can store a string."""

from torch import nn

from labkit.models.resnet34_unet import ResNet34UNet
from labkit.models.unet import UNet

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "resnet34_unet": ResNet34UNet}


def build_model(name: str, **kwargs) -> nn.Module:
    """The model registered as `name`, built with `kwargs` (e.g. `base_width=16` for "unet")."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of weights in `model` (only those with requires_grad when `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["MODELS", "ResNet34UNet", "UNet", "build_model", "count_parameters"]
