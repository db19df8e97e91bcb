"""Losses: BCE + soft Dice, blind to ignored pixels."""

import pytest
import torch

from labkit.losses import SegmentationLoss, masked_bce_loss, soft_dice_loss
from labkit.metrics import IGNORE_INDEX

CONFIDENT = 20.0  # sigmoid(20) = 1 - 2e-9


def random_target(seed: int = 0, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(2, size, size, generator=generator) > 0.5).to(torch.uint8)


def confident_logits(mask: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W) logits that predict `mask` (sign=1) or its opposite (sign=-1) with confidence."""
    return (sign * torch.where(mask == 1, CONFIDENT, -CONFIDENT))[:, None]


def test_perfect_confident_prediction_has_near_zero_loss():
    target = random_target()
    assert SegmentationLoss()(confident_logits(target), target).item() < 1e-6


def test_confident_empty_prediction_of_empty_target_has_near_zero_dice_loss():
    target = torch.zeros(2, 16, 16, dtype=torch.uint8)
    assert soft_dice_loss(confident_logits(target), target).item() < 1e-6


def test_confidently_wrong_prediction_has_high_loss():
    # BCE of a pixel predicted wrong at logit 20 is about 20; soft Dice is about 1.
    target = random_target()
    loss = SegmentationLoss()(confident_logits(target, sign=-1.0), target)
    assert loss.item() > 20


def test_soft_dice_loss_of_inverted_prediction_is_near_one():
    # Overlap 0, and prediction + target cover all 16*16 = 256 pixels once:
    # loss = 1 - (0 + smooth) / (256 + smooth) = 256/257 with the default smooth = 1.
    target = random_target()
    loss = soft_dice_loss(confident_logits(target, sign=-1.0), target)
    assert loss.item() == pytest.approx(256 / 257, abs=1e-6)


def test_soft_dice_is_averaged_per_image():
    # Image 0 predicted perfectly (loss 0), image 1 inverted (loss 256/257, see above):
    # mean (0 + 256/257) / 2, whatever the number of pet pixels in each.
    target = random_target()
    logits = confident_logits(target)
    logits[1] = -logits[1]
    assert soft_dice_loss(logits, target).item() == pytest.approx(128 / 257, abs=1e-6)


def test_ignored_pixels_do_not_change_the_loss():
    target = random_target()
    target[:, :4] = IGNORE_INDEX
    logits = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    changed = logits.clone()
    changed[:, :, :4] = torch.randn(2, 1, 4, 16) * 50
    loss = SegmentationLoss()
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), abs=1e-6)


def test_ignored_pixels_get_no_gradient():
    target = random_target()
    target[:, :4] = IGNORE_INDEX
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    SegmentationLoss()(logits, target).backward()
    assert torch.all(logits.grad[:, :, :4] == 0)
    assert torch.any(logits.grad[:, :, 4:] != 0)


def test_gradients_are_finite_even_for_extreme_logits():
    target = random_target()
    target[0] = 0  # an empty mask
    logits = (torch.randn(2, 1, 16, 16) * 1e4).requires_grad_()
    SegmentationLoss()(logits, target).backward()
    assert torch.isfinite(logits.grad).all()


def test_bce_averages_over_non_ignored_pixels_only():
    # All logits 0: BCE is log(2) per pixel, whatever the share of ignored pixels.
    target = random_target()
    target[:, :8] = IGNORE_INDEX
    bce = masked_bce_loss(torch.zeros(2, 1, 16, 16), target)
    assert bce.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_zero_weight_disables_a_term():
    target = random_target()
    logits = torch.randn(2, 1, 16, 16)
    assert SegmentationLoss(bce_weight=0)(logits, target).item() == pytest.approx(
        soft_dice_loss(logits, target).item()
    )
    assert SegmentationLoss(dice_weight=0)(logits, target).item() == pytest.approx(
        masked_bce_loss(logits, target).item()
    )


def test_weights_scale_their_terms():
    target = random_target()
    logits = torch.randn(2, 1, 16, 16)
    expected = 2 * masked_bce_loss(logits, target) + 3 * soft_dice_loss(logits, target)
    assert SegmentationLoss(2, 3)(logits, target).item() == pytest.approx(expected.item())


def test_each_deep_supervision_output_weighs_half_as_much_as_the_one_before():
    target = random_target()
    main, side, coarser = (torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in range(3))
    loss = SegmentationLoss()
    expected = (loss(main, target) + 0.5 * loss(side, target) + 0.25 * loss(coarser, target)) / 1.75
    assert loss([main, side, coarser], target).item() == pytest.approx(expected.item())


def test_long_targets_and_channel_free_logits_are_accepted():
    target = random_target()
    logits = torch.randn(2, 1, 16, 16)
    expected = SegmentationLoss()(logits, target).item()
    assert SegmentationLoss()(logits[:, 0], target.long()).item() == pytest.approx(expected)


@pytest.mark.parametrize("weights", [(-1.0, 1.0), (0.0, 0.0)])
def test_negative_or_all_zero_weights_are_rejected(weights):
    with pytest.raises(ValueError, match="weights"):
        SegmentationLoss(*weights)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="same"):
        SegmentationLoss()(torch.zeros(2, 1, 16, 16), torch.zeros(2, 8, 8, dtype=torch.uint8))
