"""Exercise checks a student runs in the cell after each exercise.

Each check tests behaviour against `labkit`'s reference implementation and prints one line when
every case passes; otherwise it raises `CheckFailed` with the case, what was expected, what came
and a hint (no traceback in a notebook).
"""

from labkit.checks.core import CheckFailed
from labkit.checks.models import (
    check_basic_block, check_double_conv, check_down, check_resnet34_encoder, check_resnet34_unet, check_stage_builder,
    check_unet, check_up,
)
from labkit.checks.pipeline import (
    check_dice_iou, check_loss, check_mask_at_photo_size, check_train_one_epoch, check_training_step,
    check_trimap_to_mask,
)

__all__ = [
    "CheckFailed", "check_basic_block", "check_dice_iou", "check_double_conv", "check_down", "check_loss",
    "check_mask_at_photo_size", "check_resnet34_encoder", "check_resnet34_unet", "check_stage_builder",
    "check_train_one_epoch", "check_training_step", "check_trimap_to_mask", "check_unet", "check_up",
]
