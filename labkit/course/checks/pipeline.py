"""Checks for the data, training, metric and inference exercises (notebooks 00, 03, 04, 05).

Hand-made cases come first, each aimed at one classic mistake so that its failure names it; then
a comparison with labkit's own function on random inputs. Hidden cases add the corners: confident
wrong logits for the loss, ignored pixels and a tie at the threshold for Dice, batches of
non-square photos for masks, and a training state whose `step_model` is not its `model`.
"""

import math

import numpy as np
import torch

from labkit import data, evaluate, losses, metrics, train
from labkit.course.checks.core import Checker, case_seed, check, short
from labkit.course.subjects import as_subject, reference_subject


def reported(checker: Checker, subject, *args, **kwargs):
    """What the student's function returned for these arguments."""
    return checker.probe(subject, "function_report", args=args, kwargs=kwargs)["result"]


def as_tensor(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


@check
def check_trimap_to_mask(trimap_to_mask, *, seed: int | None = None, hidden: bool = False) -> None:
    """`trimap_to_mask(trimap: np.ndarray) -> np.ndarray`: uint8, 1 where the trimap is 1 (pet) or
    3 (border), 0 where it is 2 (background), same shape, the trimap left unchanged."""
    student, checker = as_subject(trimap_to_mask, "trimap_to_mask"), Checker("trimap_to_mask")
    rng = np.random.default_rng(case_seed(seed, hidden))
    if not hidden:
        for value, expected, name in ((1, 1, "pet"), (2, 0, "background"), (3, 1, "border")):
            got = np.asarray(reported(checker, student, np.full((2, 3), value, dtype=np.uint8)))
            checker.expect(f"a trimap of {name} pixels (value {value}) gives mask value {expected}",
                           got.shape == (2, 3) and bool((got == expected).all()), np.full((2, 3), expected).tolist(),
                           got.tolist(), "the border band (3) is part of the pet outline: it counts as pet, like 1; "
                                         "only 2 is background")
    shapes = [(1, 40), (40, 1), (23, 64)] if hidden else [(37, 51)]
    for shape in shapes:
        dtype = np.int32 if hidden else np.uint8
        trimap = rng.integers(1, 4, size=shape).astype(dtype)
        report = checker.probe(student, "function_report", args=(trimap,), return_arguments=True)
        got = report["result"]
        checker.equal(f"the {shape} trimap passed in is left unchanged", True,
                      bool(np.array_equal(report["arguments"][0], trimap)),
                      "build a new array instead of writing into the trimap you were given")
        checker.expect(f"the mask of a {shape} {np.dtype(dtype).name} trimap is a NumPy array",
                       isinstance(got, np.ndarray), "a numpy.ndarray", type(got).__name__,
                       "return a NumPy array, as the data pipeline stores masks")
        checker.equal(f"shape of the mask of a {shape} trimap", shape, got.shape, "one mask value per trimap pixel")
        checker.equal(f"dtype of the mask of a {np.dtype(dtype).name} trimap", np.dtype(np.uint8), got.dtype,
                      "convert the mask to uint8 whatever the trimap's type: the data pipeline stores uint8 masks")
        expected = data.trimap_to_mask(trimap.astype(np.uint8), "pet")
        checker.expect(f"a random {shape} trimap", bool(np.array_equal(got, expected)), f"{int(expected.sum())} pet pixels",
                       f"{int((got == 1).sum())} pet pixels, {int(np.isin(got, (0, 1), invert=True).sum())} values "
                       "other than 0 and 1", "1 and 3 become 1, 2 becomes 0")
    checker.done(hidden)


LOSS_FORMULA = ("binary cross-entropy computed from the logits (the numerically stable form), averaged over every "
                "pixel of the batch, plus the mean over images of 1 minus the soft Dice of each image: twice the sum "
                "of p times t plus 1, over the sum of p plus the sum of t plus 1, with p the sigmoid of the logits")


def compare_loss(checker: Checker, student, logits: torch.Tensor, target: torch.Tensor, case: str, hint: str) -> None:
    expected = reference_subject(losses.SegmentationLoss(), "segmentation_loss").probe(
        "function_report", args=(logits, target), gradient_of=0)
    got = checker.probe(student, "function_report", args=(logits, target), gradient_of=0)
    checker.expect(f"the loss on {case} is a single number", isinstance(got["result"], torch.Tensor)
                   and got["result"].dim() == 0, "a 0-dim tensor (a scalar)", short(got["result"]),
                   "average everything down to one number")
    checker.close(f"the loss on {case}", expected["result"], got["result"], hint, atol=1e-4)
    checker.expect(f"the loss on {case} can be backpropagated", got.get("gradient") is not None,
                   "a gradient for the logits", "none (the loss has no grad_fn)",
                   "compute the loss from the logits with torch operations; never threshold them or leave autograd")
    checker.close(f"the gradient of the loss on {case}", expected["gradient"], got["gradient"],
                  "use sigmoid probabilities, never thresholded predictions; " + hint, atol=1e-5)


@check
def check_loss(segmentation_loss, *, seed: int | None = None, hidden: bool = False) -> None:
    """`segmentation_loss(logits: (B, 1, H, W), masks: (B, H, W) uint8 0/1) -> scalar tensor`:
    BCE-with-logits averaged over pixels + mean over images of 1 - soft Dice (smooth = 1)."""
    student, checker = as_subject(segmentation_loss, "segmentation_loss"), Checker("segmentation_loss")
    generator = torch.Generator().manual_seed(case_seed(seed, hidden))
    if hidden:
        target = (torch.rand(3, 12, 20, generator=generator) > 0.5).to(torch.uint8)
        confident_wrong = torch.where(target.bool(), -20.0, 20.0)[:, None]
        compare_loss(checker, student, confident_wrong, target, "confident wrong logits (+-20)",
                     "take the cross-entropy from the logits themselves: computed from sigmoid(logits) it saturates, "
                     "and a confident mistake gets a clipped loss and no gradient")
        compare_loss(checker, student, torch.randn(1, 1, 9, 31, generator=generator) * 3,
                     torch.ones(1, 9, 31, dtype=torch.uint8), "one all-pet image", LOSS_FORMULA)
        compare_loss(checker, student, torch.randn(4, 1, 16, 8, generator=generator),
                     (torch.rand(4, 16, 8, generator=generator) > 0.8).to(torch.uint8), "random logits (4, 1, 16, 8)",
                     LOSS_FORMULA)
        checker.done(hidden)
        return
    empty = torch.zeros(2, 8, 8, dtype=torch.uint8)
    got = reported(checker, student, torch.full((2, 1, 8, 8), -20.0), empty)
    checker.expect("an empty target predicted confidently empty scores near 0", isinstance(got, torch.Tensor)
                   and got.numel() == 1 and bool(got.abs().max() < 1e-3), "about 0.0", short(got),
                   "the +1 above and below the soft Dice fraction makes empty against empty a Dice of 1, so a loss of "
                   "0, not nan")
    target = torch.zeros(2, 16, 16, dtype=torch.uint8)
    target[0, 2:14, 2:14], target[1, 5:7, 5:7] = 1, 1  # a large pet and a small one
    compare_loss(checker, student, torch.randn(2, 1, 16, 16, generator=generator) + 0.5, target,
                 "a large and a small pet", "soft Dice is computed per image and then averaged over the images; "
                                            + LOSS_FORMULA)
    compare_loss(checker, student, torch.randn(3, 1, 13, 17, generator=generator),
                 (torch.rand(3, 13, 17, generator=generator) > 0.6).to(torch.uint8), "random logits (3, 1, 13, 17)",
                 LOSS_FORMULA)
    checker.done(hidden)


def same_weights(expected: dict, got: dict) -> float:
    return max((expected[name].double() - got[name].double()).abs().max().item() for name in expected)


@check
def check_training_step(training_step, *, seed: int | None = None, hidden: bool = False) -> None:
    """`training_step(state, images, masks) -> Tensor`: forward through `state.step_model`, the loss,
    zero the gradients, backward, one optimiser step and one scheduler step; the loss, detached."""
    student, checker = as_subject(training_step, "my_training_step"), Checker("my_training_step")
    seed = case_seed(seed, hidden)
    steps = 3 if hidden else 2
    expected = reference_subject(train.training_step, "training_step").probe("training_step_report", seed=seed,
                                                                              steps=steps)["steps"]
    got = checker.probe(student, "training_step_report", seed=seed, steps=steps)["steps"]
    for number, (want, have) in enumerate(zip(expected, got), start=1):
        checker.close(f"the loss returned at step {number}", want["loss"], have["loss"],
                      "the loss of the step's forward pass through state.loss_fn, before the weights change")
        checker.expect(f"the loss returned at step {number} is detached",
                       not have["requires_grad"] and not have["has_grad_fn"], "no grad_fn, requires_grad False",
                       f"requires_grad {have['requires_grad']}", "return the loss detached from the graph: a kept "
                       "graph holds every activation of the step in memory")
        difference = same_weights(want["weights"], have["weights"])
        checker.expect(f"the weights after step {number}", difference < 1e-5, "the reference's weights",
                       f"weights differing by up to {difference:.3g}",
                       "clear the old gradients before backward, then exactly one optimiser step")
        checker.equal(f"the learning-rate schedule's position after step {number}", want["schedule"], have["schedule"],
                      "step the scheduler once per training step, after the optimiser")
        if hidden:
            checker.equal(f"calls of state.step_model at step {number}", want["step_model_calls"],
                          have["step_model_calls"], "run the forward pass through state.step_model (the compiled or "
                          "distributed model), not state.model")
    checker.done(hidden)


@check
def check_train_one_epoch(train_one_epoch, *, seed: int | None = None, hidden: bool = False) -> None:
    """`train_one_epoch(state, train, batch_size) -> float`: train mode, one pass over
    `shuffled_batches(len(train), batch_size, state.generator)`, `prepare_batch` and one training
    step per batch; the mean loss over the photos seen."""
    student, checker = as_subject(train_one_epoch, "my_train_one_epoch"), Checker("my_train_one_epoch")
    seed = case_seed(seed, hidden)
    photos, batch_size = (7, 3) if hidden else (6, 2)
    hint = ("put state.step_model in train mode, then for each batch of shuffled_batches(...) with the state's "
            "generator: prepare_batch, one training step; weigh each batch's loss by its number of photos")
    expected = reference_subject(train.train_one_epoch, "train_one_epoch").probe(
        "epoch_report", seed=seed, photos=photos, batch_size=batch_size)
    got = checker.probe(student, "epoch_report", seed=seed, photos=photos, batch_size=batch_size)
    case = f"{photos} photos in batches of {batch_size}"
    checker.expect(f"the mean loss of an epoch on {case} is a Python float", got["type"] == "float", "a float",
                   got["type"], "return a float (item() of a tensor): a tensor would keep the device waiting later")
    checker.equal(f"state.step_model is in train mode after the epoch ({case})", True, got["step_model_training"],
                  "BatchNorm must use the batch statistics while training: switch state.step_model to train mode")
    result = got["result"] if isinstance(got["result"], float) else float("nan")
    checker.expect(f"the epoch's mean loss ({case})", math.isclose(result, expected["result"], abs_tol=1e-5),
                   expected["result"], got["result"], hint)
    difference = same_weights(expected["weights"], got["weights"])
    checker.expect(f"the weights after the epoch ({case})", difference < 1e-5, "the reference's weights",
                   f"weights differing by up to {difference:.3g}", hint)
    checker.equal(f"training steps taken in the epoch ({case})", expected["schedule"], got["schedule"],
                  "one training step per batch of shuffled_batches; it drops the last, incomplete batch")
    if hidden:
        checker.equal(f"calls of state.step_model in the epoch ({case})", expected["step_model_calls"],
                      got["step_model_calls"], "train through state.step_model, not state.model")
    checker.done(hidden)


def metric_cases(checker: Checker, student, reference, name: str, generator: torch.Generator, hidden: bool) -> None:
    """The hand-made cases one per-image metric must get right, then random batches."""
    reference = reference_subject(reference, name)

    def compare(case: str, hint: str, *args, **kwargs) -> None:
        expected = reference.probe("function_report", args=args, kwargs=kwargs)["result"]
        got = reported(checker, student, *args, **kwargs)
        checker.expect(f"the scores of {case} are floats, one per image", isinstance(got, torch.Tensor)
                       and got.shape == expected.shape and got.is_floating_point(),
                       f"a float tensor of shape {tuple(expected.shape)}", short(got),
                       "sum the counts over H and W of each image only, never over the batch, and return floats")
        checker.close(f"{name} of {case}", expected, got, hint)

    if hidden:
        truth = (torch.rand(3, 10, 14, generator=generator) > 0.5).to(torch.uint8)
        truth[torch.rand(3, 10, 14, generator=generator) < 0.2] = metrics.IGNORE_INDEX
        logits = torch.randn(3, 1, 10, 14, generator=generator)
        compare("a batch with ignored (255) pixels", "ignored pixels count nowhere: neither as pet nor as background, "
                "neither predicted nor missed", logits, truth)
        tie = torch.zeros(2, 1, 4, 4)
        compare("logits exactly 0 (probability exactly 0.5) at threshold 0.5",
                "a pixel is pet only where its probability is strictly above the threshold", tie,
                torch.ones(2, 4, 4, dtype=torch.uint8))
        compare("logits of shape (B, H, W), without the channel dimension",
                "accept logits with or without the channel dimension", torch.randn(2, 6, 9, generator=generator),
                (torch.rand(2, 6, 9, generator=generator) > 0.5).to(torch.uint8))
        empty = torch.zeros(4, 8, 8, dtype=torch.uint8)
        empty[:2, 2:5, 3:7] = 1
        compare("a batch with two empty masks, one predicted empty and one not",
                "nothing to find and nothing found scores 1; a false alarm on an empty mask scores 0",
                torch.where(torch.arange(4)[:, None, None, None] == 3, 5.0, -5.0).expand(4, 1, 8, 8).clone(), empty)
        logits = torch.randn(5, 1, 23, 17, generator=generator) * 2
        compare("random logits (5, 1, 23, 17) with threshold=0.3", f"{name} per image from thresholded predictions",
                logits, (torch.rand(5, 23, 17, generator=generator) > 0.4).to(torch.uint8), threshold=0.3)
        return
    truth = torch.zeros(3, 4, 4, dtype=torch.uint8)
    predicted = torch.zeros(3, 4, 4, dtype=torch.bool)
    truth[0, 1:3, 0:3], predicted[0, 1:3, 1:4] = 1, True  # 6 vs 6 pixels, 4 shared
    truth[2], predicted[2, 0:3] = 1, True  # 12 of 16 found
    logits = torch.where(predicted, 4.0, -4.0)[:, None]  # (3, 1, 4, 4)
    compare("three 4x4 images: 4 of 6 pixels shared; empty truth and prediction; 12 of 16 found",
            f"{name} of each image from its own counts, 1 where there is nothing to find and nothing was found; a "
            "prediction is the sigmoid of the logit above the threshold (with one channel, an argmax over channels "
            "always picks channel 0, so nothing would ever be pet)", logits, truth)
    pet = torch.ones(1, 2, 2, dtype=torch.uint8)
    compare("logits of 0.3 (probability 0.57) on an all-pet mask", "threshold the probability, not the logit itself",
            torch.full((1, 1, 2, 2), 0.3), pet)
    compare("the same logits with threshold=0.6", "use the threshold argument", torch.full((1, 1, 2, 2), 0.3), pet,
            threshold=0.6)
    logits = torch.randn(4, 1, 13, 17, generator=generator)
    compare("random logits (4, 1, 13, 17) with threshold=0.4", f"{name} per image from thresholded predictions",
            logits, (torch.rand(4, 13, 17, generator=generator) > 0.5).to(torch.uint8), threshold=0.4)


@check
def check_dice_iou(dice_per_image, iou_per_image, *, seed: int | None = None, hidden: bool = False) -> None:
    """`dice_per_image(logits, truth, threshold=0.5)` and `iou_per_image(...)`: logits (B, 1, H, W)
    or (B, H, W), truth (B, H, W) of 0, 1 and IGNORE_INDEX -> float scores (B,)."""
    dice, iou = as_subject(dice_per_image, "dice_per_image"), as_subject(iou_per_image, "iou_per_image")
    seed = case_seed(seed, hidden)
    dice_checker, iou_checker = Checker("dice_per_image"), Checker("iou_per_image")
    metric_cases(dice_checker, dice, metrics.dice_per_image, "Dice", torch.Generator().manual_seed(seed), hidden)
    metric_cases(iou_checker, iou, metrics.iou_per_image, "IoU", torch.Generator().manual_seed(seed), hidden)
    further = "further " if hidden else ""
    print(f"All {dice_checker.passed + iou_checker.passed} {further}dice_per_image and iou_per_image checks passed.")


def masks_at(logits: torch.Tensor, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """The reference: labkit's `evaluate.mask_at_size` (logits resized bilinearly to the photo's
    size, then their sigmoid thresholded), photo by photo."""
    return torch.stack([evaluate.mask_at_size(image, (height, width), threshold=threshold) for image in logits])


@check
def check_mask_at_photo_size(mask_at_photo_size, *, seed: int | None = None, hidden: bool = False) -> None:
    """`mask_at_photo_size(logits: (B, 1, h, w), height, width, threshold=0.5) -> bool (B, height, width)`."""
    student, checker = as_subject(mask_at_photo_size, "mask_at_photo_size"), Checker("mask_at_photo_size")
    generator = torch.Generator().manual_seed(case_seed(seed, hidden))
    hint = ("resize the logits bilinearly (align_corners=False) to (height, width), then compare their sigmoid "
            "with the threshold, and drop only the channel dimension")
    reference = reference_subject(masks_at, "mask_at_photo_size")
    if hidden:
        cases = [((3, 1, 12, 20), 50, 31, 0.5), ((2, 1, 20, 12), 31, 50, 0.35), ((1, 1, 16, 16), 16, 16, 0.5)]
    else:
        cases = [((1, 1, 16, 16), 37, 51, 0.5), ((1, 1, 16, 16), 37, 51, 0.7)]
        got = as_tensor(reported(checker, student, torch.full((1, 1, 16, 16), 5.0), 37, 51))
        checker.equal("the shape of the mask of one 51 wide, 37 high photo", (1, 37, 51),
                      tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__,
                      "height first, then width; keep the batch dimension and drop the channel dimension")
        checker.equal("dtype of the mask", torch.bool, got.dtype, "return the comparison with the threshold itself")
        checker.expect("confident pet logits (+5) give an all-pet mask", bool(got.all()), "every pixel True",
                       f"{int(got.sum())} of {got.numel()} True", "with one output channel an argmax over channels is "
                       "always 0; threshold the sigmoid of the logit instead")
    for shape, height, width, threshold in cases:
        logits = torch.randn(*shape, generator=generator) * 3
        expected = reference.probe("function_report", args=(logits, height, width), kwargs={"threshold": threshold})
        got = as_tensor(reported(checker, student, logits, height, width, threshold=threshold))
        checker.close(f"random logits {shape} to {len(logits)} photo(s) {height} high and {width} wide, "
                      f"threshold={threshold}", expected["result"], got,
                      "resize the logits, not the mask or the probabilities, then threshold: " + hint)
    checker.done(hidden)
