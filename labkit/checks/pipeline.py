"""Checks for the data, training, metric and inference exercises (notebooks 00, 03, 04, 05).

Hand-made cases come first, each aimed at one classic mistake, so the failure names it; then a
comparison with `labkit`'s own function on random inputs.
"""

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from labkit import data, losses, metrics, train
from labkit.augment import AugmentConfig
from labkit.checks.core import Checker, check, short
from labkit.device import grad_scaler
from labkit.models import UNet


@check
def check_trimap_to_mask(fn: Callable, seed: int = 0) -> None:
    """`trimap_to_mask(trimap: np.ndarray) -> np.ndarray`: uint8, 1 where the trimap is 1 (pet) or
    3 (border), 0 where it is 2 (background), same shape."""
    checker, rng = Checker("trimap_to_mask"), np.random.default_rng(seed)
    for value, expected, name in ((1, 1, "pet"), (2, 0, "background"), (3, 1, "border")):
        trimap = np.full((2, 3), value, dtype=np.uint8)
        got = np.asarray(checker.call(f"on a trimap of {name} pixels ({value})", fn, trimap.copy()))
        checker.expect(f"a trimap of {name} pixels (value {value}) gives mask value {expected}",
                       got.shape == trimap.shape and bool((got == expected).all()), np.full((2, 3), expected).tolist(),
                       got.tolist(), "the border band (3) is part of the pet outline: it counts as pet, like 1; "
                       "only 2 is background")
    trimap = rng.integers(1, 4, size=(37, 51)).astype(np.uint8)
    original = trimap.copy()
    got = checker.call("on a (37, 51) trimap", fn, trimap)
    checker.equal("the trimap passed in is left unchanged", True, bool(np.array_equal(trimap, original)),
                  "build a new array (np.where, a lookup, a comparison) instead of writing into the trimap")
    got = np.asarray(got)
    checker.equal("shape of the mask for a (37, 51) trimap", (37, 51), got.shape, "one mask value per trimap pixel")
    checker.equal("dtype of the mask", np.dtype(np.uint8), got.dtype, "return .astype(np.uint8): the data pipeline stores uint8 masks")
    expected = data.trimap_to_mask(original, "pet")
    checker.expect("a random (37, 51) trimap", bool(np.array_equal(got, expected)), f"{int(expected.sum())} pet pixels",
                   f"{int((got == 1).sum())} pet pixels, {int(np.isin(got, (0, 1), invert=True).sum())} values other than 0 and 1",
                   "1 and 3 -> 1, 2 -> 0")
    checker.done()


@check
def check_loss(fn: Callable, seed: int = 0) -> None:
    """`segmentation_loss(logits: (B, 1, H, W), target: (B, H, W) uint8 0/1) -> scalar tensor`:
    BCE-with-logits averaged over pixels + mean over images of 1 - soft Dice (smooth = 1)."""
    checker, generator = Checker("segmentation_loss"), torch.Generator().manual_seed(seed)
    formula = ("F.binary_cross_entropy_with_logits(logits, target) + mean over images of 1 - (2 * sum(p * t) + 1) / "
               "(sum(p) + sum(t) + 1), p = sigmoid(logits), sums over H and W of each image")
    empty = torch.zeros(2, 8, 8, dtype=torch.uint8)
    got = checker.call("on an empty target predicted empty", fn, torch.full((2, 1, 8, 8), -20.0), empty)
    checker.expect("shape of the loss", isinstance(got, Tensor) and got.dim() == 0, "a 0-dim tensor (a scalar)",
                   short(got), "average everything down to one number")
    checker.expect("an empty target predicted confidently empty scores near 0", bool(got.abs() < 1e-3), "about 0.0",
                   short(got), "the smooth term (+1 above and below) makes Dice of empty vs empty 1, so its loss 0 (not nan)")
    target = torch.zeros(2, 16, 16, dtype=torch.uint8)
    target[0, 2:14, 2:14], target[1, 5:7, 5:7] = 1, 1  # a large pet and a small one
    logits = torch.randn(2, 1, 16, 16, generator=generator) + 0.5
    expected = losses.SegmentationLoss()(logits, target)
    got = checker.call("on a large and a small pet", fn, logits, target)
    checker.close("a batch with a large and a small pet (soft Dice per image, then the mean)", expected, got,
                  f"soft Dice is computed per image and averaged; {formula}")
    logits = torch.randn(3, 1, 13, 17, generator=generator, requires_grad=True)
    target = (torch.rand(3, 13, 17, generator=generator) > 0.6).to(torch.uint8)
    got = checker.call("on random logits", fn, logits, target)
    checker.close("random logits (3, 1, 13, 17)", losses.SegmentationLoss()(logits, target), got, formula)
    checker.call("in backward()", got.backward)
    gradient = logits.grad
    checker.expect("the loss has a gradient for every logit", gradient is not None and bool((gradient != 0).all()),
                   "a non-zero gradient everywhere", "none" if gradient is None else f"{int((gradient == 0).sum())} zeros",
                   "use sigmoid probabilities, never thresholded predictions, so the loss stays differentiable")
    checker.done()


def _tiny_state(seed: int) -> train.TrainingState:
    torch.manual_seed(seed)
    model = UNet(base_width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return train.TrainingState(
        model=model, step_model=model, loss_fn=losses.SegmentationLoss(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=10),
        scaler=grad_scaler(torch.device("cpu"), "fp32"), generator=torch.Generator().manual_seed(seed),
        augment=AugmentConfig(), device=torch.device("cpu"), precision="fp32",
    )


def _same_weights(reference: train.TrainingState, student: train.TrainingState) -> float:
    return max((a - b).abs().max().item() for a, b in zip(reference.model.parameters(), student.model.parameters()))


@check
def check_training_step(fn: Callable, seed: int = 0) -> None:
    """`training_step(state, images, masks) -> Tensor`: forward, loss, zero_grad, backward,
    optimizer step, scheduler step; returns the loss, detached."""
    checker, generator = Checker("training_step"), torch.Generator().manual_seed(seed)
    hint = ("loss = state.loss_fn(state.step_model(images), masks); state.optimizer.zero_grad(); loss.backward(); "
            "state.optimizer.step(); state.scheduler.step(); return loss.detach()")
    reference, student = _tiny_state(seed), _tiny_state(seed)  # the same weights
    for step in (1, 2):
        images = torch.randn(2, 3, 32, 32, generator=generator)
        masks = (torch.rand(2, 32, 32, generator=generator) > 0.5).to(torch.uint8)
        expected = train.training_step(reference, images, masks)
        got = checker.call(f"at step {step}", fn, student, images, masks)
        checker.close(f"the loss returned at step {step}", expected, got, hint)
        checker.expect(f"the loss returned at step {step} is detached", got.grad_fn is None and not got.requires_grad,
                       "no grad_fn", f"grad_fn={got.grad_fn}", "return loss.detach(): a kept graph holds every "
                       "activation of the step in memory")
        difference = _same_weights(reference, student)
        checker.expect(f"the weights after step {step}", difference < 1e-5, "the reference's weights",
                       f"weights differing by up to {difference:.3g}",
                       "zero the old gradients before backward, then exactly one optimizer.step(): " + hint)
        checker.equal(f"learning-rate schedule position after step {step}", reference.scheduler.last_epoch,
                      student.scheduler.last_epoch, "call state.scheduler.step() once, after state.optimizer.step()")
    checker.done()


@check
def check_train_one_epoch(fn: Callable, seed: int = 0) -> None:
    """`train_one_epoch(state, train, batch_size) -> float`: train mode, one pass over
    `shuffled_batches(len(train), batch_size, state.generator)`, `prepare_batch`, `training_step`
    per batch; returns the mean loss over the images seen."""
    checker, generator = Checker("train_one_epoch"), torch.Generator().manual_seed(seed)
    hint = ("state.step_model.train(); for indices in train.shuffled_batches(len(split), batch_size, state.generator): "
            "images, masks = prepare_batch(state, split, indices); add training_step(...) * len(indices); "
            "return the total / images seen, as a float")
    split = train.SplitTensors(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator),
                               (torch.rand(6, 32, 32, generator=generator) > 0.5).to(torch.uint8))
    reference, student = _tiny_state(seed), _tiny_state(seed)
    student.model.eval()  # as validation leaves it
    expected = train.train_one_epoch(reference, split, batch_size=2)
    got = checker.call("on 6 photos in batches of 2", fn, student, split, 2)
    checker.expect("the epoch's mean loss is a float", isinstance(got, float), "a Python float",
                   type(got).__name__, "return total.item() / seen (a tensor keeps the device waiting)")
    checker.equal("the model is in train mode after the epoch", True, student.model.training,
                  "call state.step_model.train() first: BatchNorm must use the batch statistics while training")
    checker.expect("the epoch's mean loss", abs(got - expected) < 1e-5, expected, got, hint)
    difference = _same_weights(reference, student)
    checker.expect("the weights after the epoch", difference < 1e-5, "the reference's weights",
                   f"weights differing by up to {difference:.3g}", hint)
    checker.done()


def _metric_cases(checker: Checker, fn: Callable, reference: Callable, name: str, generator: torch.Generator) -> None:
    """The hand-made cases one per-image metric must get right, then random batches."""
    truth = torch.zeros(3, 4, 4, dtype=torch.uint8)
    predicted = torch.zeros(3, 4, 4, dtype=torch.bool)
    truth[0, 1:3, 0:3], predicted[0, 1:3, 1:4] = 1, True  # 6 vs 6 pixels, 4 shared
    truth[2], predicted[2, 0:3] = 1, True  # 12 of 16 found
    logits = torch.where(predicted, 4.0, -4.0)[:, None]  # (3, 1, 4, 4)
    got = checker.call("on a batch of 3 images", fn, logits, truth)
    checker.expect("shape of the scores for a batch of 3 images", isinstance(got, Tensor) and tuple(got.shape) == (3,),
                   "shape (3,): one score per image", short(got),
                   "sum the counts over H and W of each image only, never over the batch")
    expected = reference(logits, truth)
    checker.close(f"image 0: 4 of 6 pixels shared, {name} {expected[0]:.4f}", expected[0], got[0],
                  f"{name} of each image from its own counts; a prediction is sigmoid(logit) > threshold "
                  "(with one channel, argmax always picks channel 0: nothing is ever pet)")
    checker.close(f"image 1: empty truth, empty prediction: {name} 1.0", expected[1], got[1],
                  "nothing to find and nothing found is a perfect score: return 1 where the denominator is 0")
    checker.close(f"image 2: 12 of 16 pet pixels found, {name} {expected[2]:.4f}", expected[2], got[2],
                  "per-image scores differ from the whole batch's pooled score")
    logits = torch.full((1, 1, 2, 2), 0.3)  # sigmoid(0.3) = 0.57
    pet = torch.ones(1, 2, 2, dtype=torch.uint8)
    got = checker.call("on logits of 0.3", fn, logits, pet)
    checker.close(f"logits of 0.3 (probability 0.57) on an all-pet mask: {name} 1.0", torch.ones(1), got,
                  "threshold the probability sigmoid(logit), not the logit itself")
    got = checker.call("with threshold=0.6", fn, logits, pet, threshold=0.6)
    checker.close(f"the same logits with threshold=0.6: nothing predicted, {name} 0.0", torch.zeros(1), got,
                  "use the threshold argument: pet where sigmoid(logit) > threshold")
    logits = torch.randn(4, 1, 13, 17, generator=generator)
    truth = (torch.rand(4, 13, 17, generator=generator) > 0.5).to(torch.uint8)
    got = checker.call("on random logits (4, 1, 13, 17)", fn, logits, truth, threshold=0.4)
    checker.close("random logits (4, 1, 13, 17) with threshold=0.4", reference(logits, truth, threshold=0.4), got,
                  f"{name} per image from thresholded predictions")


@check
def check_dice_iou(dice_fn: Callable, iou_fn: Callable, seed: int = 0) -> None:
    """`dice_per_image(logits, target, threshold=0.5)` and `iou_per_image(...)`: logits (B, 1, H, W),
    target (B, H, W) 0/1 -> float scores (B,); empty prediction of an empty mask scores 1."""
    generator = torch.Generator().manual_seed(seed)
    dice, iou = Checker("dice_per_image"), Checker("iou_per_image")
    _metric_cases(dice, dice_fn, metrics.dice_per_image, "Dice", generator)
    _metric_cases(iou, iou_fn, metrics.iou_per_image, "IoU", generator)
    print(f"All {dice.passed + iou.passed} dice_per_image and iou_per_image checks passed.")


def reference_mask_at_photo_size(logits: Tensor, height: int, width: int, threshold: float = 0.5) -> Tensor:
    """Resize the logits (bilinear) to the photo's size, then threshold their sigmoid, as
    `labkit.predict.predict_probability` does."""
    resized = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return torch.sigmoid(resized)[0, 0] > threshold


@check
def check_mask_at_photo_size(fn: Callable, seed: int = 0) -> None:
    """`mask_at_photo_size(logits: (1, 1, S, S), height, width, threshold=0.5) -> bool (height, width)`."""
    checker, generator = Checker("mask_at_photo_size"), torch.Generator().manual_seed(seed)
    hint = ("F.interpolate(logits, size=(height, width), mode='bilinear', align_corners=False), then "
            "sigmoid(...) > threshold, then drop the batch and channel dimensions")
    got = checker.call("on confident pet logits", fn, torch.full((1, 1, 16, 16), 5.0), 37, 51)
    got = torch.as_tensor(np.asarray(got)) if not isinstance(got, Tensor) else got
    checker.equal("shape of the mask for a 51 wide, 37 high photo", (37, 51), tuple(got.shape),
                  "size=(height, width): height first; drop the batch and channel dimensions with [0, 0]")
    checker.equal("dtype of the mask", torch.bool, got.dtype, "return the comparison sigmoid(...) > threshold itself")
    checker.expect("confident pet logits (+5) give an all-pet mask", bool(got.all()), "every pixel True",
                   f"{int(got.sum())} of {got.numel()} True",
                   "one output channel: argmax over it is always 0; threshold sigmoid(logit) instead")
    logits = torch.randn(1, 1, 16, 16, generator=generator) * 3
    for threshold in (0.5, 0.7):
        expected = reference_mask_at_photo_size(logits, 37, 51, threshold)
        got = checker.call(f"with threshold={threshold}", fn, logits, 37, 51, threshold=threshold)
        got = torch.as_tensor(np.asarray(got)) if not isinstance(got, Tensor) else got
        wrong = int((got.bool() != expected).sum()) if got.shape == expected.shape else "all"
        checker.expect(f"random logits (1, 1, 16, 16) to a 37 x 51 photo, threshold={threshold}", wrong == 0,
                       f"{int(expected.sum())} pet pixels", f"{wrong} pixels differ", "resize the logits, not the mask "
                       "or the probabilities, then threshold: " + hint)
    checker.done()
