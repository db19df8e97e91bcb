"""ImageNet weights for the ResNet34 encoder, through torchvision's own download and cache.

From scratch is the lab's rule and the default; this is the optional `--pretrained` experiment.
"""

from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from labkit.checkpoint import CheckpointError, safe_load


def imagenet_weights():
    """torchvision's ResNet34 ImageNet weights entry, imported when asked for: importing
    torchvision.models takes over a second, which every notebook that trains would pay."""
    from torchvision.models import ResNet34_Weights

    return ResNet34_Weights.IMAGENET1K_V1


def imagenet_weights_path() -> Path:
    """Where torchvision caches the ResNet34 ImageNet file (`$TORCH_HOME/hub/checkpoints/...`)."""
    filename = imagenet_weights().url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_state_dict() -> dict:
    """torchvision's ResNet34 ImageNet weights: from its cache, else downloaded into it.

    Raises:
        RuntimeError: offline and not cached; says which file to place where.
    """
    try:
        return imagenet_weights().get_state_dict(progress=True)
    except (URLError, OSError) as error:
        raise RuntimeError(
            f"could not download the ResNet34 ImageNet weights ({error}); with no network, fetch "
            f"{imagenet_weights().url} elsewhere and place it at {imagenet_weights_path()}, "
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
        state_dict = load_state_dict_file(Path(source))
    model.load_encoder_weights(state_dict)


def load_state_dict_file(path: Path) -> dict:
    """A saved torchvision resnet34 state_dict, loaded safely: a file holding anything but tensors
    (a pickle that would run code) is refused in one line, and nothing in it runs.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: not a file, unreadable, unsafe, or not a state_dict.
    """
    fix = "pass 'imagenet' or the path of a saved torchvision resnet34 state_dict"
    if not path.exists():
        raise FileNotFoundError(f"no pretrained weights at {path}; {fix}")
    state_dict = safe_load(path, "cpu", "a resnet34 state_dict", fix)
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f"{path} is not a state_dict (a dict of tensors); {fix}")
    return state_dict
