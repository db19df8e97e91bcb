"""The workbook's exercises: what each answer defines, what it may use, and what stands beneath it.

An answer may use what its exercise lists and what it defines itself; nothing else of the
notebook, least of all labkit's own version of what it asks for (`labkit.course.screen` enforces
this). When an exercise builds on an earlier one (Down on DoubleConv, the UNet on all three
blocks), its check runs it on labkit's version of the earlier parts ("beneath"), so one mistake
costs one exercise.

The notebooks' prompts state the same lists in words; `tests/test_course_notebooks.py` holds the
prompts to them.
"""

from dataclasses import dataclass, field

# Modules an answer may import (the top-level name); everything else, labkit included, is refused.
ALLOWED_IMPORTS = frozenset({"torch", "numpy", "math", "typing", "collections", "itertools", "functools",
                             "dataclasses", "__future__"})


@dataclass(frozen=True)
class Exercise:
    """One autograded exercise of the workbook.

    Args:
        answer: grade_id of its answer cell in the master.
        check: grade_id of its check cell.
        defines: the names the answer must define.
        may_use: the notebook's names the answer may use besides its own definitions.
        beneath: earlier exercises it builds on, with labkit's version put in their place while it
            is checked ("module:attribute").
        members: labkit modules the answer may touch, with the only members it may use.
        points: what a passing check earns.
    """

    notebook: str
    answer: str
    check: str
    defines: tuple[str, ...]
    may_use: tuple[str, ...]
    points: float
    beneath: dict[str, str] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def allowed(self) -> tuple[str, ...]:
        """Every name of the notebook the answer may refer to."""
        return (*self.may_use, *self.beneath, *self.members)


TORCH = ("torch", "nn", "F", "Tensor")
UNET_BLOCKS = {"DoubleConv": "labkit.models.unet:DoubleConv", "Down": "labkit.models.unet:Down",
               "Up": "labkit.models.unet:Up"}

EXERCISES: dict[str, Exercise] = {exercise.answer: exercise for exercise in (
    Exercise("00_data_exploration.ipynb", "trimap_to_mask", "check_trimap_to_mask", ("trimap_to_mask",),
             ("np", "torch"), 1),
    Exercise("01_unet_from_scratch.ipynb", "DoubleConv", "check_DoubleConv", ("DoubleConv",), TORCH, 1),
    Exercise("01_unet_from_scratch.ipynb", "Down", "check_Down", ("Down",), TORCH, 1,
             beneath={"DoubleConv": UNET_BLOCKS["DoubleConv"]}),
    Exercise("01_unet_from_scratch.ipynb", "Up", "check_Up", ("Up",), TORCH, 1,
             beneath={"DoubleConv": UNET_BLOCKS["DoubleConv"]}),
    Exercise("01_unet_from_scratch.ipynb", "UNet", "check_UNet", ("UNet",),
             (*TORCH, "pad_to_multiple", "init_weights"), 2, beneath=UNET_BLOCKS),
    Exercise("02_resnet34_unet.ipynb", "BasicBlock", "check_BasicBlock", ("BasicBlock",), (*TORCH, "conv3x3"), 1),
    Exercise("02_resnet34_unet.ipynb", "make_stage", "check_make_stage", ("make_stage",), TORCH, 1,
             beneath={"BasicBlock": "labkit.models.resnet34_unet:BasicBlock"}),
    Exercise("02_resnet34_unet.ipynb", "ResNet34Encoder", "check_ResNet34Encoder", ("ResNet34Encoder",), TORCH, 2,
             beneath={"make_stage": "labkit.models.resnet34_unet:make_stage",
                      "BasicBlock": "labkit.models.resnet34_unet:BasicBlock"}),
    Exercise("02_resnet34_unet.ipynb", "ResNet34UNet", "check_ResNet34UNet", ("ResNet34UNet",),
             (*TORCH, "DecoderBlock", "pad_to_multiple", "init_weights"), 2,
             beneath={"ResNet34Encoder": "labkit.models.resnet34_unet:ResNet34Encoder"}),
    Exercise("03_training.ipynb", "segmentation_loss", "check_segmentation_loss", ("segmentation_loss",), TORCH, 2),
    Exercise("03_training.ipynb", "training_step", "check_training_step", ("my_training_step",),
             ("torch", "Tensor", "TrainingState"), 2),
    Exercise("03_training.ipynb", "train_one_epoch", "check_train_one_epoch", ("my_train_one_epoch",),
             ("torch", "Tensor", "TrainingState", "SplitTensors", "shuffled_batches", "prepare_batch"), 2,
             beneath={"my_training_step": "labkit.train:training_step"}),
    Exercise("04_evaluation.ipynb", "dice_iou", "check_dice_iou", ("dice_per_image", "iou_per_image"),
             ("torch",), 3, members={"metrics": ("IGNORE_INDEX",)}),
    Exercise("05_inference_gallery.ipynb", "mask_at_photo_size", "check_mask_at_photo_size", ("mask_at_photo_size",),
             ("torch", "F"), 1),
)}

BY_CHECK: dict[str, Exercise] = {exercise.check: exercise for exercise in EXERCISES.values()}


def exercise_defining(name: str) -> Exercise:
    """The exercise whose answer defines `name` ("UNet", "dice_per_image", ...)."""
    for exercise in EXERCISES.values():
        if name in exercise.defines:
            return exercise
    raise KeyError(f"no exercise of the workbook defines {name!r}")


def reference(path: str):
    """The labkit object a "module:attribute" path names."""
    import importlib

    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
