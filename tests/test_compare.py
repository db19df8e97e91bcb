"""The paired comparison: numbers worked out by hand beside each case."""

import math

import pytest

from labkit.compare import paired_difference, standard_error


def test_the_difference_is_after_minus_before_with_the_standard_error_of_the_differences():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, SE 0.1 / sqrt(3)
    result = paired_difference([0.5, 0.5, 0.5], [0.6, 0.7, 0.8])
    assert result.mean == pytest.approx(0.2)
    assert result.standard_error == pytest.approx(0.1 / math.sqrt(3))
    assert result.standard_errors == pytest.approx(2 * math.sqrt(3))
    assert result.count == 3 and result.is_clear()


def test_pairing_cancels_what_the_photos_share():
    # The photos differ a lot (0.2 to 0.9) but "after" is always 0.01 higher: the unpaired standard
    # errors are about 0.2 each, the paired one is 0, so the small gain is clear.
    before = [0.2, 0.5, 0.9, 0.4]
    result = paired_difference(before, [score + 0.01 for score in before])
    assert result.mean == pytest.approx(0.01) and result.standard_error == pytest.approx(0, abs=1e-12)
    assert result.is_clear()


def test_a_difference_within_two_standard_errors_is_not_clear():
    # differences +0.1, -0.1, +0.1, -0.1, +0.1: mean 0.02, sd 0.1095, SE 0.049 -> 0.41 SE
    result = paired_difference([0.5] * 5, [0.6, 0.4, 0.6, 0.4, 0.6])
    assert result.standard_errors == pytest.approx(0.02 / (math.sqrt(0.012) / math.sqrt(5)))
    assert not result.is_clear()
    assert str(result).startswith("+0.0200 ± 0.0490 (+0.4 SE, 5 photos)")


def test_a_worse_model_gives_a_negative_difference():
    result = paired_difference([0.9, 0.8, 0.85], [0.7, 0.65, 0.6])
    assert result.mean < 0 and result.standard_errors < -2 and result.is_clear()


@pytest.mark.parametrize("before, after", [([0.5, 0.6], [0.5]), ([0.5], [0.6])])
def test_scores_of_different_photos_or_a_single_photo_are_refused(before, after):
    with pytest.raises(ValueError):
        paired_difference(before, after)


def test_a_difference_is_put_into_words_only_when_it_is_clear():
    worse = paired_difference([0.9, 0.8, 0.85], [0.7, 0.65, 0.6])  # mean -0.2, clear
    assert worse.describe("B is better", "A is better") == (
        f"A is better, by 0.200 Dice ({abs(worse.standard_errors):.1f} paired standard errors)")
    noisy = paired_difference([0.5] * 5, [0.6, 0.4, 0.6, 0.4, 0.6])
    assert noisy.describe("B is better", "A is better").startswith("no clear difference: 0.020 Dice, 0.4 paired")


def test_standard_error_of_a_mean_uses_the_sample_standard_deviation():
    # 1, 2, 3, 4: mean 2.5, sample variance 5/3 (n - 1 = 3; the population variance would be 5/4)
    assert standard_error([1, 2, 3, 4]) == pytest.approx(math.sqrt(5 / 3) / 2)
    assert standard_error([0.7]) == 0.0


def test_a_tiny_standard_error_is_printed_with_its_first_two_digits():
    # Thousands of photos make the standard error of a difference tiny; four decimals would show 0.0000.
    result = paired_difference([0.5] * 4000, [0.5027 + 0.0017 * (-1) ** index for index in range(4000)])
    assert str(result).startswith("+0.002700 ± 0.000027 (")


def test_the_same_shift_on_every_photo_has_no_standard_error_despite_float_rounding():
    before = [0.1, 0.7, 0.3, 0.9, 0.55]
    result = paired_difference(before, [score + 0.0123 for score in before])  # rounding differs photo to photo
    assert result.standard_error == 0.0 and result.is_clear()
    assert str(result).startswith("+0.0123 ± 0.0000 (+inf SE")
