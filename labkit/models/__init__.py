"""The lab's two segmentation models, built by name so configs and checkpoints can store a string."""

import inspect

import torch
from torch import nn

from labkit.models.resnet34_unet import ResNet34UNet
from labkit.models.unet import UNet

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "resnet34_unet": ResNet34UNet}


def build_model(name: str, **kwargs) -> nn.Module:
    """The model registered as `name`, built with `kwargs` (e.g. `base_width=16` for "unet")."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def check_same_weights(model: nn.Module, name: str, model_kwargs: dict) -> None:
    """Refuse a model built elsewhere (a student's UNet) unless it holds exactly the weights of
    `build_model(name, **model_kwargs)`, so that its checkpoint loads into labkit's own class.

    Raises:
        ValueError: one line naming the first weight that is missing, extra or of another shape.
    """
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {key: tuple(tensor.shape) for key, tensor in build_model(name, **model_kwargs).state_dict().items()}
    given = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    for key in expected.keys() | given.keys():
        if expected.get(key) != given.get(key):
            problem = ("is missing" if key not in given else "is not in it" if key not in expected
                       else f"has shape {given[key]}, expected {expected[key]}")
            raise ValueError(f"the model given to fit does not match config.model {name!r} with model_kwargs "
                             f"{model_kwargs}: weight {key!r} {problem}; build the model with the same arguments, "
                             "or name the model it is in the config")
def weights_fit(weights: dict[str, torch.Tensor]) -> tuple[str, dict] | None:
    """The registered model and arguments whose weights have exactly these names and shapes, or None."""
    for name, model_class in MODELS.items():
        try:
            arguments = model_class.arguments_from_weights(weights)
            with torch.device("meta"):
                expected = build_model(name, **arguments).state_dict()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            continue
        if expected.keys() == weights.keys() and all(expected[key].shape == weights[key].shape for key in expected):
            return name, arguments
    return None


def default_arguments(name: str) -> dict:
    """A registered model's constructor arguments and their defaults, read from its signature."""
    return {key: parameter.default for key, parameter in inspect.signature(MODELS[name]).parameters.items()}


def describe_model(name: str, arguments: dict) -> str:
    """`unet(base_width=16)`: a registered model and the arguments in which it differs from its defaults."""
    defaults = default_arguments(name)
    changed = [f"{key}={value!r}" for key, value in arguments.items()
               if key not in defaults or as_tuple(defaults[key]) != as_tuple(value)]
    return f"{name}({', '.join(changed)})"


def as_tuple(value):
    """Lists as tuples, so (64, 32) and the [64, 32] a JSON round trip makes compare equal."""
    return tuple(value) if isinstance(value, list) else value


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of weights in `model` (only those with requires_grad when `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["MODELS", "ResNet34UNet", "UNet", "build_model", "check_same_weights", "count_parameters", "default_arguments",
           "describe_model", "weights_fit"]
