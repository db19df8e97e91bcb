"""Training losses for binary pet masks: BCE plus soft Dice, both blind to ignored pixels.

BCE gives every pixel a well-behaved gradient; soft Dice optimises the overlap we report and is
insensitive to how much of the photo is background. Summing the two is the usual recipe
(e.g. the nnU-Net and segmentation_models_pytorch defaults).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.data.images import IGNORE_INDEX
from labkit.metrics import drop_channel_dim


def _targets_and_weights(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Logits (B, H, W), 0/1 float targets and a 0/1 float weight that is 0 on ignored pixels."""
    logits = drop_channel_dim(logits)
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must cover the same "
            "(B, H, W) pixels"
        )
    valid = (target != IGNORE_INDEX).to(logits.dtype)
    truth = (target == 1).to(logits.dtype)
    return logits, truth, valid


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """Mean over images of 1 - soft Dice, computed on sigmoid probabilities.

    Args:
        logits: (B, 1, H, W) or (B, H, W) raw model output.
        target: (B, H, W) with values 0, 1 or IGNORE_INDEX (ignored pixels do not count).
        smooth: added to numerator and denominator. It keeps an empty target with a confident
            empty prediction near 0 loss instead of 0/0, and is negligible next to the
            thousands of pet pixels of a real mask.
    """
    logits, truth, valid = _targets_and_weights(logits, target)
    probability = torch.sigmoid(logits) * valid
    truth = truth * valid
    dims = (1, 2)
    intersection = (probability * truth).sum(dims)
    denominator = probability.sum(dims) + truth.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    return (1 - dice).mean()


def masked_bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy with logits, averaged over the non-ignored pixels of the batch."""
    logits, truth, valid = _targets_and_weights(logits, target)
    per_pixel = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1)


class SegmentationLoss(nn.Module):
    """bce_weight * BCE + dice_weight * soft Dice; a weight of 0 switches that term off."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(
                f"loss weights must be >= 0 and not both 0, got bce_weight={bce_weight}, "
                f"dice_weight={dice_weight}"
            )
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: Tensor | list[Tensor], target: Tensor) -> Tensor:
        """logits (B, 1, H, W), target (B, H, W) uint8/long -> scalar loss.

        A list of logits (a deep-supervised model in train mode: main output first, then coarser
        ones) is weighted as in nnU-Net: each output half as much as the one before, the weights
        normalised to sum to 1."""
        if isinstance(logits, (list, tuple)):
            weights = [0.5**index for index in range(len(logits))]
            return sum(weight * self(output, target) for weight, output in zip(weights, logits)) / sum(weights)
        loss = logits.new_zeros(())
        if self.bce_weight:
            loss = loss + self.bce_weight * masked_bce_loss(logits, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}"
