"""Self-describing checkpoints: one file holds the weights and everything needed to rebuild them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`, which never executes code from the file. It is written to a
temporary file and renamed into place, so an interruption never leaves a half-written checkpoint.
"""

import errno
import os
import pickle
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import labkit
from labkit.config import TrainConfig, default_value
from labkit.device import place
from labkit.errors import one_line
from labkit.history import EpochRecord
from labkit.models import MODELS, build_model

# Format 1 covered two layouts: the first checkpoints kept the best epoch's row under "metrics", later
# ones under "best", beside the history, the precision and the number of processes. Format 2 is the
# later layout under its own number, so a reader of the first layout refuses it ("upgrade labkit")
# instead of loading it without its best row. Both layouts of format 1 are still read.
FORMAT_VERSION = 2
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
    """Write atomically: to a temporary file of this process first, then rename over `path`, so
    neither an interruption, a full disk nor a second writer leaves a half-written checkpoint.

    Raises:
        OSError: the file could not be written (ENOSPC: "no space left ... writing PATH"); the
            temporary file is removed and any older checkpoint at `path` is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:  # a file object: a full disk raises OSError, not torch's enforce
            torch.save(checkpoint, file)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the disk writing {path}; free some space and "
                                        "train again (--resume continues from the last checkpoint)", str(path)) from None
        raise
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
        raise CheckpointError(f"{path} is truncated or corrupted and cannot be read ({one_line(error)}); "
                              "retrain or copy it again") from None
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


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model, without the tensors."""

    path: Path | None
    model_name: str
    model_kwargs: dict
    config: TrainConfig | None  # None for a checkpoint written outside `fit`
    data: dict  # root, fingerprints, split sizes
    epoch: int | None
    best: EpochRecord | None  # the epoch best.pt holds, by valid Dice
    history: list[EpochRecord]
    precision: str | None  # the resolved training precision ("fp32", "bf16", "fp16")
    versions: dict
    interrupted: bool = False

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: str | Path | None = None) -> "CheckpointInfo":
        config = checkpoint.get("config")
        best = checkpoint.get("best") or checkpoint.get("metrics")  # "metrics": format 1
        return cls(
            path=Path(path) if path is not None else None, model_name=checkpoint["model_name"],
            model_kwargs=dict(checkpoint["model_kwargs"]), config=TrainConfig.from_dict(config) if config else None,
            data=dict(checkpoint.get("data", {})), epoch=checkpoint.get("epoch"),
            best=EpochRecord.from_dict(best) if best else None,
            history=[EpochRecord.from_dict(row) for row in checkpoint.get("history", [])],
            precision=checkpoint.get("precision"), versions=dict(checkpoint.get("versions", {})),
            interrupted=bool(checkpoint.get("interrupted", False)),
        )


@dataclass
class TrainedModel:
    """A model loaded from a checkpoint, next to what the checkpoint says about it."""

    model: nn.Module
    info: CheckpointInfo


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The model saved in a checkpoint (on `device` in its memory format, `device.place`; in eval
    mode) and the checkpoint's facts."""
    checkpoint = load_checkpoint(path)
    model = place(model_from_checkpoint(checkpoint), torch.device(device))
    return TrainedModel(model, CheckpointInfo.from_checkpoint(checkpoint, path))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model saved in a checkpoint, on `device`, in eval mode."""
    return load_trained(path, device).model


ModelSource = nn.Module | TrainedModel | str | Path


def model_and_info(source: ModelSource, device: str | torch.device = "auto") -> tuple[nn.Module, CheckpointInfo | None]:
    """A model and what its checkpoint says: a model passed in stays as it is (on its own device,
    no checkpoint facts); a checkpoint path is loaded onto `device` ("auto": CUDA when available)."""
    from labkit.device import resolve_device

    if isinstance(source, TrainedModel):
        return source.model, source.info
    if isinstance(source, nn.Module):
        return source, None
    trained = load_trained(source, resolve_device(str(device)))
    return trained.model, trained.info


def trained_image_size(info: CheckpointInfo | None, image_size: int | None) -> int:
    """The side of the square a model sees: `image_size` when given, else its training size.

    Raises:
        ValueError: neither is known (a model built or trained in a notebook, passed without
            its checkpoint); a guess would score or predict at the wrong size.
    """
    if image_size is not None:
        return image_size
    if info is not None and info.config is not None:
        return info.config.image_size
    raise ValueError("pass image_size= (the size the model was trained at, e.g. config.image_size): "
                     "a model without its checkpoint does not say which size it expects")


def trained_border(info: CheckpointInfo | None, border: str | None) -> str:
    """How trimap borders count: `border` when given, else as in training, else the default."""
    if border is not None:
        return border
    if info is not None and info.config is not None:
        return info.config.border
    return default_value("border")


def trained_fold(info: CheckpointInfo | None) -> dict:
    """Which fold of trainval validated the model (`valid_fold`, `folds`): its valid split is that
    fold, its train split the rest; the default fold for a model without a checkpoint."""
    config = info.config if info is not None and info.config is not None else None
    return {"valid_fold": config.valid_fold if config else default_value("valid_fold"),
            "folds": config.folds if config else default_value("folds")}


def unwrap(model: nn.Module) -> nn.Module:
    """The model behind `torch.compile`, whose state_dict keys carry an `_orig_mod.` prefix."""
    return getattr(model, "_orig_mod", model)
