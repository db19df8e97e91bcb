"""ImageNet weights for the ResNet34 encoder, through torchvision's own download and cache.

From scratch is the lab's rule and the default; this is the optional `--pretrained` experiment.
"""

from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet34_Weights


def imagenet_weights_path() -> Path:
    """Where torchvision caches the ResNet34 ImageNet file (`$TORCH_HOME/hub/checkpoints/...`)."""
    filename = ResNet34_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_state_dict() -> dict:
    """torchvision's ResNet34 ImageNet weights: from its cache, else downloaded into it.

    Raises:
        RuntimeError: offline and not cached; says which file to place where.
    """
    try:
        return ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except (URLError, OSError) as error:
        raise RuntimeError(
            f"could not download the ResNet34 ImageNet weights ({error}); with no network, fetch "
            f"{ResNet34_Weights.IMAGENET1K_V1.url} elsewhere and place it at {imagenet_weights_path()}, "
            "or pass the path of a saved torchvision resnet34 state_dict instead of 'imagenet'"
        ) from None


def load_pretrained_encoder(model: nn.Module, source: str | Path) -> None:
    """Load ResNet34 weights into `model.encoder`.

    Args:
        model: a ResNet34UNet.
        source: "imagenet" (torchvision's weights) or the path of a torchvision resnet34 state_dict.
    """
    if not hasattr(model, "load_encoder_weights"):
        raise ValueError(f"pretrained weights exist only for resnet34_unet, not {type(model).__name__}")
    if str(source) == "imagenet":
        state_dict = imagenet_state_dict()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no pretrained weights at {path}; pass 'imagenet' or the path of a resnet34 state_dict")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model.load_encoder_weights(state_dict)
