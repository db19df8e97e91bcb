"""Metrics: every expected number below is counted by hand in the comment beside it."""

import pytest
import torch

from labkit.metrics import (
    IGNORE_INDEX,
    SegmentationMeter,
    confusion_per_image,
    dice_from_counts,
    dice_per_image,
    iou_from_counts,
    iou_per_image,
    pixel_accuracy,
    predict_mask,
)

PET, BACKGROUND = 10.0, -10.0  # logits far from the threshold


def logits_from(mask: torch.Tensor) -> torch.Tensor:
    """Confident logits (1, 1, H, W) that predict exactly `mask` (H, W)."""
    return torch.where(mask.bool(), PET, BACKGROUND)[None, None]


def four_pet_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 target with 4 pet pixels; the prediction hits 2 of them and adds 2 false positives."""
    target = torch.zeros(4, 4, dtype=torch.uint8)
    target[0, 0:4] = 1  # pet: (0,0) (0,1) (0,2) (0,3)
    prediction = torch.zeros(4, 4, dtype=torch.uint8)
    prediction[0, 0:2] = 1  # hits (0,0) (0,1)
    prediction[1, 0:2] = 1  # false positives (1,0) (1,1)
    return logits_from(prediction), target[None]


def test_partial_overlap_gives_textbook_dice_and_iou():
    # |P| = 4, |T| = 4, |P∩T| = 2, |P∪T| = 6: Dice = 2*2/(4+4) = 0.5, IoU = 2/6 = 1/3.
    logits, target = four_pet_pixels()
    assert dice_per_image(logits, target).item() == pytest.approx(0.5)
    assert iou_per_image(logits, target).item() == pytest.approx(1 / 3)


def test_partial_overlap_pixel_accuracy_counts_both_classes():
    # 16 pixels, wrong: 2 false positives + 2 missed pet pixels -> 12/16 = 0.75.
    logits, target = four_pet_pixels()
    assert pixel_accuracy(logits, target).item() == pytest.approx(0.75)


def test_confusion_counts_of_partial_overlap():
    logits, target = four_pet_pixels()
    counts = confusion_per_image(predict_mask(logits), target)
    assert {key: value.tolist() for key, value in counts.items()} == {"tp": [2], "fp": [2], "fn": [2], "tn": [10]}
    assert all(value.dtype == torch.int64 for value in counts.values())


def test_empty_prediction_of_empty_target_scores_one():
    target = torch.zeros(1, 4, 4, dtype=torch.uint8)
    logits = torch.full((1, 1, 4, 4), BACKGROUND)
    assert dice_per_image(logits, target).item() == 1.0
    assert iou_per_image(logits, target).item() == 1.0


def test_empty_prediction_of_nonempty_target_scores_zero():
    _, target = four_pet_pixels()
    logits = torch.full((1, 1, 4, 4), BACKGROUND)
    assert dice_per_image(logits, target).item() == 0.0
    assert iou_per_image(logits, target).item() == 0.0


def test_any_prediction_on_empty_target_scores_zero():
    target = torch.zeros(1, 4, 4, dtype=torch.uint8)
    logits = torch.full((1, 1, 4, 4), BACKGROUND)
    logits[0, 0, 2, 2] = PET  # one false positive: Dice = 0 / (1 + 0) = 0
    assert dice_per_image(logits, target).item() == 0.0


def test_from_counts_handles_zero_denominator_elementwise():
    tp, fp, fn = torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 0])
    # image 0 is empty vs empty -> 1; image 1: Dice = 6/(6+1) , IoU = 3/(3+1)
    assert dice_from_counts(tp, fp, fn).tolist() == pytest.approx([1.0, 6 / 7])
    assert iou_from_counts(tp, fp, fn).tolist() == pytest.approx([1.0, 3 / 4])


def test_logit_of_zero_is_background():
    # sigmoid(0) is exactly 0.5 and the rule is "> 0.5".
    assert not predict_mask(torch.zeros(1, 1, 2, 2)).any()
    assert predict_mask(torch.full((1, 1, 2, 2), 1e-3)).all()


def test_predict_mask_drops_the_channel_dimension():
    assert predict_mask(torch.zeros(2, 1, 5, 7)).shape == (2, 5, 7)
    assert predict_mask(torch.zeros(2, 5, 7)).shape == (2, 5, 7)


def test_threshold_is_applied_to_the_probability_not_the_logit():
    logits = torch.full((1, 1, 2, 2), 1.0)  # sigmoid(1) ≈ 0.73
    assert predict_mask(logits, threshold=0.7).all()
    assert not predict_mask(logits, threshold=0.8).any()


def test_ignored_pixels_count_nowhere():
    logits, target = four_pet_pixels()
    # Mark the two false positives and one missed pet pixel as ignored:
    # tp = 2, fp = 0, fn = 1 -> Dice = 4/5, IoU = 2/3, accuracy = (2 + 10) / 13.
    target[0, 1, 0:2] = IGNORE_INDEX
    target[0, 0, 3] = IGNORE_INDEX
    assert dice_per_image(logits, target).item() == pytest.approx(4 / 5)
    assert iou_per_image(logits, target).item() == pytest.approx(2 / 3)
    assert pixel_accuracy(logits, target).item() == pytest.approx(12 / 13)


def test_bool_and_long_targets_score_like_uint8():
    logits, target = four_pet_pixels()
    expected = dice_per_image(logits, target).item()
    assert dice_per_image(logits, target.bool()).item() == expected
    assert dice_per_image(logits, target.long()).item() == expected


def test_raw_trimap_values_are_rejected():
    trimap = torch.full((1, 4, 4), 2, dtype=torch.uint8)  # 2 = background in a raw trimap
    with pytest.raises(ValueError, match="trimap_to_mask"):
        dice_per_image(torch.zeros(1, 1, 4, 4), trimap)


def test_prediction_and_target_of_different_sizes_are_rejected():
    with pytest.raises(ValueError, match="resize"):
        dice_per_image(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.uint8))


def mean_and_dataset_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 4x4 images: a big pet predicted perfectly and a one-pixel pet that is missed."""
    target = torch.zeros(2, 4, 4, dtype=torch.uint8)
    target[0, :, 0:2] = 1  # image 0: 8 pet pixels
    target[1, 3, 3] = 1  # image 1: 1 pet pixel
    prediction = target.clone()
    prediction[1] = 0  # image 1 predicted empty
    logits = torch.where(prediction.bool(), PET, BACKGROUND)[:, None]
    return logits, target


def test_mean_per_image_differs_from_dataset_level():
    # Per image: Dice 1 and 0 -> mean 0.5; IoU 1 and 0 -> mean 0.5.
    # Pooled: tp = 8, fp = 0, fn = 1 -> Dice = 16/17, IoU = 8/9.
    # Pixel accuracy per image: 16/16 and 15/16 -> mean 31/32.
    meter = SegmentationMeter()
    meter.update(*mean_and_dataset_case())
    scores = meter.compute()
    assert scores["dice"] == pytest.approx(0.5)
    assert scores["iou"] == pytest.approx(0.5)
    assert scores["dice_dataset"] == pytest.approx(16 / 17)
    assert scores["iou_dataset"] == pytest.approx(8 / 9)
    assert scores["pixel_accuracy"] == pytest.approx(31 / 32)
    assert scores["images"] == 2


def test_per_image_scores_keep_the_order_of_updates():
    logits, target = mean_and_dataset_case()
    meter = SegmentationMeter()
    meter.update(logits[1:], target[1:])
    meter.update(logits[:1], target[:1])
    assert meter.per_image()["dice"] == [0.0, 1.0]


def test_meter_over_batches_of_different_sizes_equals_one_big_batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1, 8, 8, generator=generator)
    target = (torch.rand(5, 8, 8, generator=generator) > 0.5).to(torch.uint8)
    target[0, 0, 0] = IGNORE_INDEX
    whole, split = SegmentationMeter(), SegmentationMeter()
    whole.update(logits, target)
    split.update(logits[:2], target[:2])
    split.update(logits[2:], target[2:])
    assert split.compute() == whole.compute()
    assert split.per_image() == whole.per_image()


def test_meter_accepts_a_list_of_images_of_different_sizes():
    # Image 0 (4x4): the partial-overlap case, Dice 0.5. Image 1 (2x3, no channel dim): empty vs
    # empty, Dice 1. Mean = 0.75; pooled: tp 2, fp 2, fn 2 -> Dice 4/8 = 0.5.
    logits, target = four_pet_pixels()
    empty_logits = torch.full((2, 3), BACKGROUND)
    empty_target = torch.zeros(2, 3, dtype=torch.uint8)
    meter = SegmentationMeter()
    meter.update([logits[0], empty_logits], [target[0], empty_target])
    scores = meter.compute()
    assert scores["dice"] == pytest.approx(0.75)
    assert scores["dice_dataset"] == pytest.approx(0.5)
    assert scores["images"] == 2


def test_meter_rejects_lists_of_different_lengths():
    with pytest.raises(ValueError, match="per image"):
        SegmentationMeter().update([torch.zeros(2, 2)], [])


def test_empty_meter_refuses_to_compute():
    with pytest.raises(ValueError, match="update"):
        SegmentationMeter().compute()


def test_reset_forgets_previous_images():
    meter = SegmentationMeter()
    meter.update(*four_pet_pixels())
    meter.reset()
    assert len(meter) == 0


def square_target(size: int = 10, low: int = 3, high: int = 7) -> torch.Tensor:
    """(1, size, size) with a pet square covering rows and columns low..high-1."""
    target = torch.zeros(1, size, size, dtype=torch.uint8)
    target[0, low:high, low:high] = 1
    return target


def test_outline_band_straddles_the_outline_by_its_width():
    from labkit.metrics import outline_band

    band = outline_band(square_target(), width=1)[0]
    # A 4x4 pet square at 3..6: its 12 edge pixels and the 20 background pixels around it; the 2x2
    # centre and everything two pixels away are out.
    assert band.sum().item() == 12 + 20
    assert not band[4:6, 4:6].any() and not band[1].any() and band[2, 2] and band[3, 3]
    assert outline_band(square_target(), width=2)[0].sum().item() == 16 + 20 + 28  # the whole square, two rings


def test_outline_band_leaves_ignored_pixels_and_outline_free_images_out():
    from labkit.metrics import outline_band

    target = square_target()
    target[0, 2, :] = IGNORE_INDEX
    assert not outline_band(target, width=1)[0, 2].any()
    assert not outline_band(torch.zeros(1, 6, 6, dtype=torch.uint8), width=2).any()  # no pet, no outline


def test_boundary_dice_sees_a_misplaced_outline_that_ordinary_dice_hardly_notices():
    from labkit.metrics import boundary_dice_per_image

    target = torch.zeros(1, 40, 40, dtype=torch.uint8)
    target[0, 5:35, 5:35] = 1  # a 30x30 pet
    shifted = torch.zeros(40, 40, dtype=torch.uint8)
    shifted[6:36, 6:36] = 1  # the same square one pixel down and right
    # Ordinary Dice: overlap 29x29 = 841 of 900 + 900 -> 0.934. Inside the 1-pixel band: the truth's
    # 116 edge pixels, of which the shifted square covers 57 (row 34 and column 34, 29 + 29 - 1),
    # missing 59, and 59 background pixels of the band (row 35 and column 35, 30 + 30 - 1);
    # Dice = 2*57 / (2*57 + 59 + 59) = 0.491.
    assert dice_per_image(logits_from(shifted), target).item() == pytest.approx(2 * 841 / 1800)
    assert boundary_dice_per_image(logits_from(shifted), target, width=1).item() == pytest.approx(114 / 232)
    assert boundary_dice_per_image(logits_from(target[0]), target, width=1).item() == 1.0
