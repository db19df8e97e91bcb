"""The notebooks' rules, applied: each verdict against the wrong reading it exists to prevent."""

import pytest
import torch

from labkit.history import EpochRecord
from labkit.verdicts import (
    OverfittingVerdict, clock_against_count, describe_fold_difference, describe_gap_change, describe_pooled_gap, describe_seed_difference,
    overfitting, pooled_gap, pooled_gap_change, timed_apart,
)


def history(valid_dice: list[float], train_loss: list[float] | None = None) -> list[EpochRecord]:
    train_loss = train_loss or [1.0 / epoch for epoch in range(1, len(valid_dice) + 1)]
    return [EpochRecord(epoch=epoch, lr=1e-3, train_loss=loss, valid_dice=dice, valid_iou=dice, valid_dice_dataset=dice,
                        epoch_seconds=1.0, train_images_per_second=10.0)
            for epoch, (dice, loss) in enumerate(zip(valid_dice, train_loss), 1)]


PEAK_THEN_PLATEAU = [0.5, 0.7, 0.8, 0.81, 0.77, 0.771, 0.769, 0.77, 0.772, 0.769, 0.771, 0.77]


def test_a_valid_dice_that_peaks_and_settles_lower_while_the_loss_falls_is_overfitting():
    verdict = overfitting(history(PEAK_THEN_PLATEAU), window=5)
    assert verdict.overfitted is True
    assert verdict.best_epoch == 4 and verdict.drop == pytest.approx(0.04)
    assert verdict.describe("ResNet34-UNet").startswith("ResNet34-UNet overfitted: its last valid Dice (0.770)")


def test_a_drop_and_a_bar_equal_to_three_decimals_are_printed_with_enough_decimals_to_tell_which_is_larger():
    """A run of 2026-12-07 printed a drop of 0.019 and a bar of 0.019 and called it overfitting (0.018688
    against 0.018605): the reader could not see why."""
    verdict = OverfittingVerdict(best_epoch=19, best_valid_dice=0.793736, last_epoch=40, last_valid_dice=0.775048,
                                 best_train_loss=0.68, last_train_loss=0.40, wobble=0.0093025, window=10)
    assert verdict.overfitted is True
    assert "lies 0.0187 below" in verdict.describe("ResNet34-UNet") and "is 0.0186" in verdict.describe("ResNet34-UNet")


def test_a_drop_and_a_bar_that_differ_at_three_decimals_keep_three():
    verdict = overfitting(history(PEAK_THEN_PLATEAU), window=5)
    assert "lies 0.040 below" in verdict.describe("UNet")


def test_a_last_epoch_below_the_best_by_less_than_the_curve_wobbles_is_not_overfitting():
    # A rule that called any drop overfitting would condemn this curve: it ends 0.01 below its
    # best, but it moves by about 0.03 from one epoch to the next.
    wobbly = [0.5, 0.7, 0.8, 0.77, 0.80, 0.77, 0.81, 0.78, 0.81, 0.78, 0.80]
    verdict = overfitting(history(wobbly), window=6)
    assert 0 < verdict.drop < 2 * verdict.wobble
    assert verdict.overfitted is False
    assert "no clear overfitting" in verdict.describe("UNet")


def test_a_clear_drop_while_the_training_loss_rises_is_not_called_overfitting():
    rising_loss = [1.0 - 0.05 * epoch for epoch in range(4)] + [0.9 + 0.01 * epoch for epoch in range(8)]
    verdict = overfitting(history(PEAK_THEN_PLATEAU, rising_loss), window=5)
    assert verdict.drop > 2 * verdict.wobble and not verdict.loss_fell
    assert verdict.overfitted is False
    assert "not by overfitting" in verdict.describe("UNet")


def test_a_run_whose_last_epoch_is_its_best_shows_no_sign_of_overfitting():
    verdict = overfitting(history([0.5, 0.6, 0.65, 0.7]))
    assert verdict.overfitted is False and "its last epoch (4) is its best" in verdict.describe("UNet")


def test_two_epochs_are_too_few_to_judge():
    verdict = overfitting(history([0.6, 0.5]))
    assert verdict.overfitted is None and "too few" in verdict.describe("UNet")


def test_the_wobble_is_measured_over_the_last_window_of_changes_only():
    # Early epochs jump by 0.3; the last four changes are +-0.01. Over the whole curve the wobble
    # would hide the drop of 0.05.
    verdict = overfitting(history([0.2, 0.5, 0.2, 0.85, 0.80, 0.81, 0.80, 0.81, 0.80]), window=4)
    assert verdict.window == 4 and verdict.wobble == pytest.approx(0.011547, abs=1e-5)
    assert verdict.overfitted is True


def test_the_overfitting_rule_refuses_an_empty_history_and_a_window_below_two():
    with pytest.raises(ValueError, match="empty"):
        overfitting([])
    with pytest.raises(ValueError, match="window"):
        overfitting(history(PEAK_THEN_PLATEAU), window=1)


@pytest.mark.parametrize("time_ratio, expected", [
    (1.83, "the time ratio is 23% below the FLOPs ratio, so the ResNet34-UNet got more arithmetic done per second"),
    (2.30, "within 20% of each other, so the count predicted the clock"),
    (3.10, "the time ratio is 30% above the FLOPs ratio, so the ResNet34-UNet got less arithmetic done per second"),
])
def test_the_clock_is_compared_with_the_count_within_a_fifth(time_ratio, expected):
    sentence = clock_against_count(time_ratio, 2.38, "the ResNet34-UNet", "the UNet")
    assert sentence.startswith(f"the ResNet34-UNet took {time_ratio:.2f}x the UNet's time per image for 2.38x its FLOPs")
    assert expected in sentence


def test_the_clock_rule_refuses_a_ratio_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        clock_against_count(0.0, 2.0, "a", "b")


A_RECORD = {"date": "2026-12-07", "device": "cpu: x86_64, 2 threads"}


def test_times_taken_on_one_day_and_device_compare_without_a_caveat():
    assert timed_apart({"the UNet": A_RECORD, "the ResNet34-UNet": dict(A_RECORD)}) is None


@pytest.mark.parametrize("other, reason", [
    ({**A_RECORD, "date": "2026-12-06"}, "a machine runs at another speed on another day"),
    ({**A_RECORD, "device": "NVIDIA H200"}, "different devices run at different speeds"),
])
def test_times_taken_apart_are_said_to_be_apart_naming_when_where_and_why(other, reason):
    sentence = timed_apart({"the UNet": other, "the ResNet34-UNet": A_RECORD})
    assert sentence.startswith("These times were not measured together")
    assert f"the UNet on {other['date']}, {other['device']}" in sentence
    assert "the ResNet34-UNet on 2026-12-07, cpu: x86_64, 2 threads" in sentence
    assert sentence.endswith(f": {reason}.")


@pytest.mark.parametrize("records", [({}, A_RECORD), ({}, {})])
def test_times_without_a_record_are_not_taken_as_measured_together(records):
    sentence = timed_apart(dict(zip(("the UNet", "the ResNet34-UNet"), records)))
    assert sentence.startswith("These times may not have been measured together")
    assert "the UNet: not recorded" in sentence


def counts(photos: list[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
    return {key: torch.tensor([photo[index] for photo in photos]) for index, key in enumerate(("tp", "fp", "fn"))}


def test_missing_the_small_pets_puts_the_mean_per_image_clearly_below_the_pooled_dice():
    # 20 large pets found (Dice 1) and 20 small ones missed (Dice 0): per image 0.5; pooled, the
    # 20 x 1,000 found pixels outweigh the 20 x 10 missed ones: 2*20000 / (40000 + 200) = 0.995.
    gap = pooled_gap(counts([(1000, 0, 0)] * 20 + [(0, 0, 10)] * 20))
    assert gap.mean == pytest.approx(0.5 - 40000 / 40200, abs=1e-6)
    assert gap.is_clear() and gap.standard_error > 0
    assert "the errors weigh more on photos with small pets" in describe_pooled_gap(gap, "at the training size")


def test_photos_scored_alike_leave_no_gap():
    gap = pooled_gap(counts([(90, 5, 5)] * 30))
    assert gap.mean == pytest.approx(0, abs=1e-6) and not gap.is_clear()
    assert "no clear gap" in describe_pooled_gap(gap, "at the training size")


def test_the_bootstrap_is_the_same_for_the_same_seed():
    photos = counts([(100 + 7 * index, index % 5, 20 - index % 7) for index in range(25)])
    assert pooled_gap(photos, seed=3) == pooled_gap(photos, seed=3)


def test_a_gap_that_appears_only_when_large_photos_weigh_more_is_a_clear_change():
    # At the training size every photo has the same pixels and the same Dice 0.9: no gap. At
    # original size ten photos are 100 times larger, and on those the model does worse (0.5).
    small = [(45, 5, 5)] * 30 + [(45, 5, 5)] * 10
    large = [(45, 5, 5)] * 30 + [(2500, 2500, 2500)] * 10
    change = pooled_gap_change(counts(small), counts(large))
    assert change.mean > 0 and change.is_clear()
    assert "does worse on the high-resolution photos" in describe_gap_change(change)


def test_the_gap_change_needs_the_same_photos_and_two_of_them():
    with pytest.raises(ValueError, match="same photos"):
        pooled_gap_change(counts([(1, 0, 0)] * 3), counts([(1, 0, 0)] * 4))
    with pytest.raises(ValueError, match="at least two photos"):
        pooled_gap(counts([(1, 0, 0)]))


def test_a_variant_beyond_twice_the_spread_over_seeds_is_clearly_higher():
    # 0.821 +- 0.004 against 0.809 +- 0.004 over 3 seeds: SE sqrt(2 x 0.004^2 / 3) = 0.0033, 3.7 SE
    sentence = describe_seed_difference({"mean": 0.809, "std": 0.004}, {"mean": 0.821, "std": 0.004}, 3)
    assert sentence == "+0.012 ± 0.003 (+3.7 SE, 3 seeds each): clearly higher"


def test_a_higher_mean_with_a_wide_spread_over_seeds_is_not_a_finding():
    # The UNet at 120 epochs: a higher mean (+0.014), but one seed alone moves it by 0.023.
    sentence = describe_seed_difference({"mean": 0.831, "std": 0.003}, {"mean": 0.845, "std": 0.023}, 3)
    assert sentence.endswith("within the spread over seeds")


def test_a_spread_over_one_seed_is_refused():
    with pytest.raises(ValueError, match="two runs"):
        describe_seed_difference({"mean": 0.8, "std": 0.0}, {"mean": 0.9, "std": 0.0}, 1)


def test_a_variant_higher_on_every_fold_is_clearly_higher_though_the_folds_differ_more():
    # The folds differ by 0.08 from the easiest to the hardest; the variant gains 0.008 to 0.012 on
    # each: paired, a clear gain; as two unpaired means (a spread of 0.03 each) it would be 0.5 SE.
    reference = [0.80, 0.82, 0.84, 0.86, 0.88]
    variant = [0.811, 0.828, 0.852, 0.869, 0.890]
    assert describe_fold_difference(reference, variant) == "+0.01000 ± 0.00071 (+14.1 SE, 5 folds): clearly higher"


def test_a_variant_that_wins_some_folds_and_loses_others_is_within_the_spread_over_folds():
    sentence = describe_fold_difference([0.80, 0.82, 0.84, 0.86, 0.88], [0.83, 0.80, 0.86, 0.84, 0.89])
    assert sentence.endswith("5 folds): within the spread over folds")
