"""Evaluation: per-image Dice and IoU at the training size and at each photo's own resolution.

The headline is the mean of per-image Dice; the dataset-level (micro) scores, which pool the pixels
of all photos first (segmentation_models_pytorch's examples report both kinds of IoU), sit beside
it. At original resolution the logits are resized bilinearly to the photo's size and compared with
the untouched trimap, so the score is in the photo's own pixels; what the network lost by seeing a
smaller copy of the photo is not given back, and counts against it.
"""

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from labkit import data
from labkit.config import check_setting
from labkit.checkpoint import ModelSource, model_and_info, trained_border, trained_fold, trained_image_size
from labkit.device import autocast, memory_format_of, resolve_precision
from labkit.metrics import SegmentationMeter, confusion_per_image, dice_from_counts, dice_per_image


@dataclass
class EvaluationResult:
    metrics: dict[str, dict[str, float]]  # {"resized": {...}, "original": {...}}
    per_image: list[dict] = field(default_factory=list)  # name, breed, species, size, Dice, IoU
    info: dict = field(default_factory=dict)  # split, root, image size, tta, model
    logits: torch.Tensor | None = None  # (N, 1, h, w) at the network's size, on the CPU: `keep_logits=True`


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Put the model in eval mode (batch norm uses its running statistics) for the block, then
    restore whatever mode it was in, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, precision: str = "auto", tta: bool = False,
                   batch_size: int = 32) -> torch.Tensor:
    """Logits (B, 1, H, W) in float32 for uint8 photos (B, 3, H, W), in eval mode (the model's own
    mode is restored afterwards); `tta` averages the logits of the photo and its mirror image.

    The network sees `batch_size` photos at a time: every layer's activations for a whole split at
    once would take gigabytes (368 photos at 128 px through the cpu profile's UNet: about 3 GB).
    """
    check_setting("batch_size", batch_size)
    device = model_device(model)
    precision = resolve_precision(precision, device)
    if len(images) == 0:
        return torch.zeros(0, 1, *images.shape[2:], device=device)
    with evaluation_mode(model), autocast(device, precision):
        return torch.cat([logits_of_batch(model, images[rows].to(device), tta)
                          for rows in batches(len(images), batch_size)])


def logits_of_batch(model: nn.Module, images: torch.Tensor, tta: bool) -> torch.Tensor:
    inputs = data.normalize(images).contiguous(memory_format=memory_format_of(model))  # the model's own layout
    logits = model(inputs).float()
    if tta:
        logits = (logits + model(inputs.flip(-1)).float().flip(-1)) / 2
    return logits


def batches(count: int, batch_size: int):
    return (slice(start, min(start + batch_size, count)) for start in range(0, count, batch_size))


def meter_tensors(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 32,
                  precision: str = "auto", tta: bool = False) -> SegmentationMeter:
    """Per-image pixel counts for photos and masks already in memory at one size."""
    meter = SegmentationMeter()
    with evaluation_mode(model):
        for batch in batches(len(images), batch_size):
            meter.update(predict_logits(model, images[batch], precision, tta, batch_size),
                         masks[batch].to(model_device(model)))
    return meter


def score_tensors(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 32,
                  precision: str = "auto", tta: bool = False) -> dict[str, float]:
    """Metrics for photos and masks already in memory at one size (the per-epoch validation)."""
    return meter_tensors(model, images, masks, batch_size, precision, tta).compute()


def threshold_sweep(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, thresholds, *,
                    batch_size: int = 32, precision: str = "auto", tta: bool = False) -> list[float]:
    """Mean per-image Dice at each threshold, from logits computed once per batch.

    Choose the threshold on the validation split and report test with it: picking it on test
    would tune the model to the very photos it is graded on.

    Args:
        images: uint8 (N, 3, H, W); masks: (N, H, W) with values 0, 1 or IGNORE_INDEX.
        thresholds: probabilities in (0, 1), e.g. [0.1, 0.2, ..., 0.9].
    """
    thresholds = [float(threshold) for threshold in thresholds]
    if not thresholds or not all(0 < threshold < 1 for threshold in thresholds):
        raise ValueError(f"thresholds must be a non-empty list of probabilities in (0, 1), got {thresholds}")
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(f"need the same, non-zero number of images and masks, got {len(images)} and {len(masks)}")
    totals = [0.0] * len(thresholds)
    with evaluation_mode(model):
        for batch in batches(len(images), batch_size):
            logits = predict_logits(model, images[batch], precision, tta, batch_size)
            target = masks[batch].to(logits.device)
            for index, threshold in enumerate(thresholds):
                totals[index] += dice_per_image(logits, target, threshold).sum().item()
    return [total / len(images) for total in totals]


def original_masks(arrays: data.SplitArrays, indices: range, border: str) -> list[torch.Tensor]:
    return [torch.from_numpy(data.trimap_to_mask(data.load_trimap(arrays.samples[i].trimap_path), border))
            for i in indices]


def evaluate(source: ModelSource, split: str = "test", *, root: str | Path | None = None,
             image_size: int | None = None, border: str | None = None, batch_size: int = 32, tta: bool = False,
             precision: str = "auto", device: str = "auto", progress: bool = True,
             keep_logits: bool = False) -> EvaluationResult:
    """Score a model on a split, at the training size and at original size.

    Args:
        source: the path of a labkit checkpoint, a `TrainedModel` (`checkpoint.load_trained`), or a
            model (then `image_size` is required).
        root: the dataset; default the one the checkpoint was trained on, else `data.resolve_root`'s.
        image_size, border: default to the checkpoint's training configuration.
        tta: average with the horizontally flipped prediction.
        keep_logits: return the logits too (float32, 4 bytes a pixel at the network's size: 240 MB
            for the 3,669 test photos at 128 px), so further scores need no second forward pass.
    """
    check_setting("batch_size", batch_size)
    model, trained = model_and_info(source, device)
    image_size = trained_image_size(trained, image_size)
    border = trained_border(trained, border)
    if root is None and trained is not None:
        root = trained.data.get("root")  # resolved when it was trained, so any working folder finds it
    root = data.resolve_root(root)
    fold = trained_fold(trained)
    arrays = data.split_arrays(root, split, size=image_size, progress=progress, **fold)
    images, masks = data.to_tensors(arrays, border=border)

    resized, original, kept = SegmentationMeter(), SegmentationMeter(), []
    with evaluation_mode(model):
        for batch in tqdm(list(batches(len(arrays), batch_size)), desc=f"evaluate {split}", disable=not progress):
            logits = predict_logits(model, images[batch], precision, tta, batch_size)
            if keep_logits:
                kept.append(logits.cpu())
            resized.update(logits, masks[batch].to(logits.device))
            indices = range(batch.start, batch.stop)
            upsampled = [F.interpolate(logits[i - batch.start][None], size=arrays.original_sizes[i],
                                       mode="bilinear", align_corners=False)[0, 0].cpu() for i in indices]
            original.update(upsampled, original_masks(arrays, indices, border))

    per_image = []
    for sample, size, at_size, at_original in zip(arrays.samples, arrays.original_sizes,
                                                   rows(resized.per_image()), rows(original.per_image())):
        per_image.append({"name": sample.name, "breed": sample.breed, "species": sample.species,
                          "height": size[0], "width": size[1], "dice": at_size["dice"], "iou": at_size["iou"],
                          "dice_original": at_original["dice"], "iou_original": at_original["iou"]})
    info = {"split": split, **fold, "root": str(root), "synthetic": data.is_synthetic(root), "image_size": image_size,
            "border": border, "tta": tta, "images": len(arrays), "model": type(model).__name__}
    return EvaluationResult({"resized": resized.compute(), "original": original.compute()}, per_image, info,
                            torch.cat(kept) if keep_logits else None)


UPSAMPLING_ORDERS = {
    "logits": "resize the logits, then threshold",  # what evaluate and predict do
    "mask": "threshold, then resize the mask",  # the 0/1 mask enlarged with nearest neighbour
}


def mask_at_size(logits: torch.Tensor, size: tuple[int, int], order: str = "logits",
                 threshold: float = 0.5) -> torch.Tensor:
    """One image's bool (H, W) mask at `size` from its (1, h, w) logits at the network's size.

    Args:
        order: "logits" resizes the logits bilinearly and thresholds at `size`; "mask" thresholds at
            the network's size and enlarges the 0/1 mask with nearest neighbour, which turns every
            network pixel into a block (a staircase along the outline).
    """
    if order not in UPSAMPLING_ORDERS:
        raise ValueError(f"order must be one of {list(UPSAMPLING_ORDERS)}, got {order!r}")
    logits = logits.float()[None]  # (1, 1, h, w)
    if order == "logits":
        resized = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return (torch.sigmoid(resized) > threshold)[0, 0]
    mask = (torch.sigmoid(logits) > threshold).float()
    return F.interpolate(mask, size=tuple(size), mode="nearest")[0, 0] > 0.5


def counts_by_upsampling_order(logits: torch.Tensor, arrays: data.SplitArrays,
                               border: str = "pet") -> dict[str, dict[str, torch.Tensor]]:
    """Per-photo pixel counts at each photo's original size, once for each order of `mask_at_size`.

    The "logits" order counts exactly what `evaluate` scores at original size.

    Args:
        logits: (N, 1, h, w) at the network's size, one per photo of `arrays` in its order (e.g.
            `evaluate(..., keep_logits=True).logits`).
        arrays: the split at the size the model was trained on (`data.load_split`).
        border: how the trimap border counts in the original-size truth, as in training.

    Returns:
        {"logits": {"tp": (N,), "fp": (N,), "fn": (N,), "tn": (N,)}, "mask": {...}}, photos in the
        split's order.
    """
    if len(logits) != len(arrays):
        raise ValueError(f"need one logit map per photo: got {len(logits)} for {len(arrays)} photos")
    counts = {order: [] for order in UPSAMPLING_ORDERS}
    for batch in batches(len(arrays), 32):  # a batch of trimaps decoded at a time
        indices = range(batch.start, batch.stop)
        for logit, truth, index in zip(logits[batch], original_masks(arrays, indices, border), indices):
            for order, photos in counts.items():
                predicted = mask_at_size(logit, arrays.original_sizes[index], order)
                photos.append(confusion_per_image(predicted[None], truth[None]))
    return {order: {key: torch.cat([photo[key].cpu() for photo in photos]) for key in photos[0]}
            for order, photos in counts.items()}


def dice_by_upsampling_order(logits: torch.Tensor, arrays: data.SplitArrays,
                             border: str = "pet") -> dict[str, list[float]]:
    """Per-photo Dice at each photo's original size, once for each order of `mask_at_size`
    (arguments as `counts_by_upsampling_order`).

    Returns:
        {"logits": [Dice of each photo], "mask": [...]}, photos in the split's order.
    """
    return {order: dice_from_counts(counts["tp"], counts["fp"], counts["fn"]).tolist()
            for order, counts in counts_by_upsampling_order(logits, arrays, border).items()}


def rows(columns: dict[str, list[float]]) -> list[dict[str, float]]:
    """{"dice": [...], "iou": [...]} -> [{"dice": ..., "iou": ...}, ...]."""
    return [dict(zip(columns, values)) for values in zip(*columns.values())]
