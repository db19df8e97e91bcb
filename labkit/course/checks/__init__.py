"""Exercise checks a student runs in the cell after each exercise.

Each check compares what the student wrote with labkit's reference, case by case, and prints one
line when every case passes; otherwise it raises `CheckFailed` with the case, what was expected,
what came and a hint (no traceback in a notebook). `hidden=True` runs the further cases a grader
adds. A check refuses an answer that is labkit's own object, an alias or subclass of it, or whose
cell uses what its exercise does not allow (`labkit.course.screen`).
"""

from labkit.course.checks.core import CheckFailed
from labkit.course.checks.models import (
    check_basic_block, check_double_conv, check_down, check_resnet34_encoder, check_resnet34_unet, check_stage_builder,
    check_unet, check_up,
)
from labkit.course.checks.pipeline import (
    check_dice_iou, check_loss, check_mask_at_photo_size, check_train_one_epoch, check_training_step,
    check_trimap_to_mask,
)

__all__ = [
    "CheckFailed", "check_basic_block", "check_dice_iou", "check_double_conv", "check_down", "check_loss",
    "check_mask_at_photo_size", "check_resnet34_encoder", "check_resnet34_unet", "check_stage_builder",
    "check_train_one_epoch", "check_training_step", "check_trimap_to_mask", "check_unet", "check_up",
]
