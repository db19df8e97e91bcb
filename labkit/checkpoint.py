"""Self-describing checkpoints: one file holds the weights and everything needed to rebuild them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`, which never executes code from the file. It is written to a
temporary file and renamed into place, so an interruption never leaves a half-written checkpoint.
"""

import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import labkit
from labkit.config import TrainConfig, default_value
from labkit.device import place
from labkit.errors import one_line
from labkit.files import FREE_SPACE_AND_RESUME, not_a_file, write_atomically
from labkit.history import EpochRecord
from labkit.models import MODELS, build_model, describe_model, weights_fit

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
    """Write atomically (see `labkit.files.write_atomically`), so neither an interruption, a full
    disk nor a second writer leaves a half-written checkpoint; any older checkpoint at `path` is
    kept when writing fails.

    Raises:
        WriteError: a full or read-only disk, in one line ("no space left on the disk writing PATH; ...").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda file: torch.save(checkpoint, file), FREE_SPACE_AND_RESUME)


def safe_load(path: Path, map_location: str | torch.device, what: str, fix: str, zip_only: bool = False):
    """`torch.load(weights_only=True)` with every way a file can be unreadable said in one line.

    Args:
        what: what the file should be, for the messages ("a labkit checkpoint").
        fix: what to do about a file that is truncated or corrupted.
        zip_only: refuse a file that is not a zip archive at once, as every file torch.save has
            written since PyTorch 1.6 is (labkit's checkpoints); older state_dicts are not.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: not a regular file, truncated or corrupted, or holding objects that safe
            loading refuses (nothing in it is run).
    """
    kind = not_a_file(path)
    if kind is not None:
        raise CheckpointError(f"{path} is {kind}, not {what}; give the path of the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}; {fix}")
    if zip_only and not zipfile.is_zipfile(path):  # a cut-off zip archive has no directory
        raise CheckpointError(f"{path} is truncated, corrupted or not a PyTorch file at all; {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds Python objects that safe loading (weights_only=True) refuses, so it is not {what} "
            "and nothing in it was run; only load such a file with weights_only=False if you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is truncated or corrupted and cannot be read ({one_line(error)}); {fix}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: not a file, truncated or corrupted, not a labkit checkpoint, or from a newer labkit.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m labkit train` or check the path")
    checkpoint = safe_load(path, map_location, "a labkit checkpoint", "retrain or copy it again", zip_only=True)
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


def model_from_checkpoint(checkpoint: dict, path: str | Path | None = None) -> nn.Module:
    """Rebuild the architecture a checkpoint describes and load its weights (eval mode, CPU).

    Raises:
        CheckpointError: the metadata names a model its weights do not fit (both are named), or
            the weights are not finite (a run that diverged).
    """
    name, arguments, weights = checkpoint["model_name"], checkpoint["model_kwargs"], checkpoint["state_dict"]
    where = path if path is not None else "the checkpoint"
    try:
        model = build_model(name, **arguments)
    except (TypeError, ValueError) as error:
        raise mismatch(where, name, arguments, weights, f", which labkit cannot build ({one_line(error)})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise mismatch(where, name, arguments, weights) from None
    not_finite = [key for key, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if not_finite:
        raise CheckpointError(f"{where} holds weights that are not finite ({not_finite[0]} and {len(not_finite) - 1} "
                              "more): the run that wrote it diverged; train again with a lower --lr")
    return model.eval()


def mismatch(where, name: str, arguments: dict, weights: dict, unbuildable: str = "") -> CheckpointError:
    """A checkpoint whose metadata names another model than its weights fit, naming both."""
    fit = weights_fit(weights)
    return CheckpointError(
        f"{where}: its metadata names {describe_model(name, arguments)}{unbuildable}, but its weights fit "
        f"{describe_model(*fit) if fit else 'no labkit model'}; the file was edited or put together by hand: "
        "retrain, or save the model again with make_checkpoint(name, arguments, model)")


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
    # {"date", "device"} where `fit` took this snapshot (`device.timing_label`); {} in checkpoints from
    # before the field existed or not written by `fit`
    written: dict = field(default_factory=dict)

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
            interrupted=bool(checkpoint.get("interrupted", False)), written=dict(checkpoint.get("written", {})),
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
    model = place(model_from_checkpoint(checkpoint, path), torch.device(device))
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
