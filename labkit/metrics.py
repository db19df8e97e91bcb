"""Dice, IoU and pixel accuracy for binary pet masks, with the conventions spelled out.

Conventions (every notebook and report uses these, so they live in one place):
- A prediction is `sigmoid(logit) > threshold`; a logit of exactly 0 is background.
- Dice = 2|P∩T| / (|P| + |T|) and IoU = |P∩T| / |P∪T|; an image where both the prediction
  and the target are empty scores 1.0 (nothing to find, nothing found).
- The headline score is the mean over images ("per image"); the dataset-level ("micro")
  score pools the pixel counts of all images first, so large pets weigh more.
- Target pixels equal to IGNORE_INDEX (the trimap border, when it is ignored) count nowhere.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.data.images import IGNORE_INDEX  # defined where masks are made


def drop_channel_dim(logits: Tensor) -> Tensor:
    """Turn model output (B, 1, H, W) into (B, H, W); (B, H, W) passes through."""
    if logits.dim() == 4 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.dim() == 3:
        return logits
    raise ValueError(
        f"expected logits of shape (B, 1, H, W) or (B, H, W), got {tuple(logits.shape)}; "
        "a single image needs a batch dimension: logits[None]"
    )


def predict_mask(logits: Tensor, threshold: float = 0.5) -> Tensor:
    """Threshold the predicted pet probability: (B, 1, H, W) or (B, H, W) -> bool (B, H, W)."""
    return torch.sigmoid(drop_channel_dim(logits).float()) > threshold


def confusion_per_image(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Count true/false positives/negatives of each image, leaving out ignored pixels.

    Args:
        pred: bool (B, H, W), True where the pet is predicted.
        target: (B, H, W) bool, uint8 or long with values in {0, 1, IGNORE_INDEX}.

    Returns:
        dict with int64 tensors `tp`, `fp`, `fn`, `tn` of shape (B,), on pred's device.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
            "(B, H, W); resize the prediction to the mask's size before scoring"
        )
    if target.dtype != torch.bool:
        known = (target == 0) | (target == 1) | (target == IGNORE_INDEX)
        if not bool(known.all()):
            raise ValueError(
                f"target values must be 0, 1 or IGNORE_INDEX={IGNORE_INDEX}, got "
                f"{torch.unique(target[~known]).tolist()}; convert trimaps with "
                "labkit.data.trimap_to_mask first"
            )
    pred = pred.bool()
    valid = target != IGNORE_INDEX
    truth = (target == 1) & valid
    background = ~truth & valid
    dims = (1, 2)
    return {
        "tp": (pred & truth).sum(dims),
        "fp": (pred & background).sum(dims),
        "fn": (~pred & truth).sum(dims),
        "tn": (~pred & background).sum(dims),
    }


def _ratio_or_one(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, with 1.0 where the denominator is 0 (empty vs empty)."""
    numerator, denominator = numerator.float(), denominator.float()
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1), torch.ones_like(numerator))


def dice_from_counts(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Dice = 2tp / (2tp + fp + fn), which equals 2|P∩T| / (|P| + |T|)."""
    return _ratio_or_one(2 * tp, 2 * tp + fp + fn)


def iou_from_counts(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """IoU (Jaccard) = tp / (tp + fp + fn), which equals |P∩T| / |P∪T|."""
    return _ratio_or_one(tp, tp + fp + fn)


def accuracy_from_counts(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor) -> Tensor:
    """Fraction of non-ignored pixels classified correctly (1.0 if every pixel is ignored)."""
    return _ratio_or_one(tp + tn, tp + fp + fn + tn)


def dice_per_image(logits: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """Dice of each image in a batch, shape (B,)."""
    counts = confusion_per_image(predict_mask(logits, threshold), target)
    return dice_from_counts(counts["tp"], counts["fp"], counts["fn"])


def iou_per_image(logits: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of each image in a batch, shape (B,)."""
    counts = confusion_per_image(predict_mask(logits, threshold), target)
    return iou_from_counts(counts["tp"], counts["fp"], counts["fn"])


def outline_band(target: Tensor, width: int = 2) -> Tensor:
    """Pixels within `width` pixels (counted along rows, columns and diagonals) of the true outline.

    A pet pixel is in the band when a background pixel lies within `width`, and a background pixel
    when a pet pixel does: the band straddles the outline, `width` pixels on each side. Ignored
    pixels are never in it.

    Args:
        target: (B, H, W) masks of 0, 1 and IGNORE_INDEX.

    Returns:
        bool (B, H, W).
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a whole number of pixels >= 1, got {width!r}")
    if target.dim() != 3:
        raise ValueError(f"target must be (B, H, W), got {tuple(target.shape)}")
    pet = (target == 1)[:, None].float()
    background = (target == 0)[:, None].float()
    near_pet, near_background = (F.max_pool2d(mask, 2 * width + 1, stride=1, padding=width)[:, 0] > 0
                                 for mask in (pet, background))
    return near_pet & near_background & (target != IGNORE_INDEX)


def boundary_dice_per_image(logits: Tensor, target: Tensor, width: int = 2, threshold: float = 0.5) -> Tensor:
    """Dice of each image counted only inside `outline_band(target, width)`, shape (B,).

    Ordinary Dice is dominated by the pet's interior; this one asks only whether the outline is in
    the right place. An image without an outline (no pet, or no background) scores 1 when nothing in
    its empty band is wrong, by the usual empty-versus-empty rule.
    """
    band_only = torch.where(outline_band(target, width), target, torch.full_like(target, IGNORE_INDEX))
    return dice_per_image(logits, band_only, threshold)


def pixel_accuracy(logits: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """Pixel accuracy of each image in a batch, shape (B,)."""
    return accuracy_from_counts(**confusion_per_image(predict_mask(logits, threshold), target))


class SegmentationMeter:
    """Accumulates per-image pixel counts over an evaluation, whatever the batch sizes.

    Counts are kept on the CPU as int64, so the scores are exact and images of different
    resolutions (evaluation at the original photo size) can be mixed freely.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._counts: dict[str, list[Tensor]] = {"tp": [], "fp": [], "fn": [], "tn": []}

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._counts["tp"])

    def update(self, logits: Tensor | list[Tensor], target: Tensor | list[Tensor]) -> None:
        """Add a batch: tensors (B, 1, H, W) / (B, H, W), or lists of per-image tensors.

        Args:
            logits: batched logits, or a list of per-image logits (1, H, W) or (H, W) whose
                sizes may differ from image to image.
            target: batched masks (B, H, W), or a list of per-image masks (H, W).
        """
        if isinstance(logits, (list, tuple)) or isinstance(target, (list, tuple)):
            self._update_images(list(logits), list(target))
            return
        counts = confusion_per_image(predict_mask(logits, self.threshold), target)
        for key, value in counts.items():
            self._counts[key].append(value.detach().cpu())

    def _update_images(self, logits: list[Tensor], target: list[Tensor]) -> None:
        if len(logits) != len(target):
            raise ValueError(f"got {len(logits)} logits but {len(target)} targets; pass one of each per image")
        for image_logits, image_target in zip(logits, target):
            if image_target.dim() != 2:
                raise ValueError(
                    f"a per-image target must be (H, W), got {tuple(image_target.shape)}; "
                    "pass batched tensors instead of a list for (B, H, W) masks"
                )
            self.update(image_logits[None], image_target[None])

    def _stacked(self) -> dict[str, Tensor]:
        if len(self) == 0:
            raise ValueError("SegmentationMeter has no images yet; call update() before compute()")
        return self.counts()

    def counts(self) -> dict[str, Tensor]:
        """Per-image `tp`, `fp`, `fn`, `tn` (int64, CPU, shape (N,)), in the order images were added."""
        return {key: torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.int64)
                for key, chunks in self._counts.items()}

    @classmethod
    def from_counts(cls, counts: dict[str, Tensor], threshold: float = 0.5) -> "SegmentationMeter":
        """A meter holding per-image counts gathered elsewhere (from several processes)."""
        meter = cls(threshold)
        for key in meter._counts:
            meter._counts[key].append(counts[key].detach().cpu())
        return meter

    def per_image(self) -> dict[str, list[float]]:
        """Dice, IoU and pixel accuracy of every image, in the order they were added."""
        counts = self._stacked()
        return {
            "dice": dice_from_counts(counts["tp"], counts["fp"], counts["fn"]).tolist(),
            "iou": iou_from_counts(counts["tp"], counts["fp"], counts["fn"]).tolist(),
            "pixel_accuracy": accuracy_from_counts(**counts).tolist(),
        }

    def compute(self) -> dict[str, float]:
        """Mean per-image scores (the headline), dataset-level (micro) Dice and IoU, and the image count.

        `pixel_accuracy` is a mean over images, like `dice` and `iou`.
        """
        counts = self._stacked()
        per_image = self.per_image()
        total = {key: value.sum() for key, value in counts.items()}
        return {
            "dice": sum(per_image["dice"]) / len(self),
            "iou": sum(per_image["iou"]) / len(self),
            "dice_dataset": dice_from_counts(total["tp"], total["fp"], total["fn"]).item(),
            "iou_dataset": iou_from_counts(total["tp"], total["fp"], total["fn"]).item(),
            "pixel_accuracy": sum(per_image["pixel_accuracy"]) / len(self),
            "images": len(self),
        }
