"""Self-describing checkpoints: one file holds the weights and everything needed to rebuild them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`, which never executes code from the file. It is written to a
temporary file and renamed into place, so an interruption never leaves a half-written checkpoint.
"""

import os
import pickle
import platform
import zipfile
from pathlib import Path

import torch
from torch import nn

import labkit
from labkit.models import MODELS, build_model

FORMAT_VERSION = 1
FORMAT_KEY = "labkit_checkpoint_format"


class CheckpointError(ValueError):
    """A file that is not a checkpoint this version of labkit can read."""


def versions() -> dict[str, str]:
    return {"labkit": labkit.__version__, "torch": str(torch.__version__), "python": platform.python_version()}


def make_checkpoint(model_name: str, model_kwargs: dict, model: nn.Module, **extra) -> dict:
    """The checkpoint dict: format, architecture, weights, versions, plus `extra`
    (config, metrics, history, data, epoch, optimizer state...).

    The weights are copied to the CPU, so the dict is a snapshot: training on afterwards (even on
    the CPU, where `.cpu()` alone would return the very same tensors) does not change it."""
    state_dict = {key: value.detach().to("cpu", copy=True) for key, value in unwrap(model).state_dict().items()}
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "state_dict": state_dict,
        "versions": versions(),
        **extra,
    }


def save_checkpoint(checkpoint: dict, path: str | Path) -> Path:
    """Write atomically: to `<path>.tmp` first, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: truncated or corrupted, not a labkit checkpoint, or from a newer labkit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m labkit train` or check the path")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has no directory
        raise CheckpointError(f"{path} is truncated, corrupted or not a PyTorch file at all; retrain or copy it again")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds Python objects that safe loading (weights_only=True) refuses, so it is not a labkit "
            "checkpoint; only load such a file with weights_only=False if you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path} is truncated or corrupted and cannot be read ({reason}); retrain or copy it again") from None
    if not isinstance(checkpoint, dict) or FORMAT_KEY not in checkpoint:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a labkit checkpoint (it has no {FORMAT_KEY!r}); "
            "a bare state_dict must be loaded into a model you build yourself with model.load_state_dict"
        )
    if checkpoint[FORMAT_KEY] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer labkit (checkpoint format {checkpoint[FORMAT_KEY]}, "
            f"this labkit {labkit.__version__} reads format {FORMAT_VERSION}); upgrade labkit"
        )
    if checkpoint.get("model_name") not in MODELS:
        raise CheckpointError(f"{path} names an unknown model {checkpoint.get('model_name')!r}; known: {sorted(MODELS)}")
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """Rebuild the architecture a checkpoint describes and load its weights (eval mode, CPU)."""
    model = build_model(checkpoint["model_name"], **checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model saved in a checkpoint, on `device`, in eval mode, with the checkpoint's summary
    (everything but the weights and optimizer state) attached as `model.checkpoint_info`."""
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint).to(device)
    model.checkpoint_info = summary(checkpoint, path)
    return model


def as_model(model_or_checkpoint: nn.Module | str | Path, device: str | torch.device = "auto") -> nn.Module:
    """A model passed in stays as it is (on its own device); a checkpoint path is loaded onto
    `device` ("auto": CUDA when available)."""
    from labkit.device import resolve_device

    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint
    return load_model(model_or_checkpoint, resolve_device(str(device)))


def training_config(model: nn.Module) -> dict:
    """The training configuration of a model loaded from a checkpoint; {} for any other model."""
    return getattr(model, "checkpoint_info", {}).get("config", {})


def summary(checkpoint: dict, path: str | Path | None = None) -> dict:
    """The checkpoint without its tensors: what it is, how it was trained, how well it did."""
    heavy = {"state_dict", "optimizer", "scheduler", "scaler", "rng"}
    info = {key: value for key, value in checkpoint.items() if key not in heavy}
    if path is not None:
        info["path"] = str(path)
    return info


def unwrap(model: nn.Module) -> nn.Module:
    """The model behind `torch.compile`, whose state_dict keys carry an `_orig_mod.` prefix."""
    return getattr(model, "_orig_mod", model)
