"""Is a difference between two scores of the same photos more than noise? The paired comparison.

Two models (or one model with and without TTA) scored on the same photos share each photo's
difficulty: a hard photo is usually hard for both. The standard error of the per-photo
*differences* leaves that shared part out, so it is smaller than the standard errors of the two
means, and it is the right yardstick for the difference.
"""

import math
import statistics
from dataclasses import dataclass

CLEAR_AT = 2.0  # a mean difference beyond this many standard errors is called clear
ROUNDING_NOISE = 1e-12  # a standard error this small (relative to the mean) is float rounding: 0
MAX_DECIMAL_PLACES = 8


@dataclass(frozen=True)
class PairedDifference:
    """Mean of `after - before` over the same photos, with its standard error."""

    mean: float
    standard_error: float
    count: int
    pairs: str = "photos"  # what was paired: photos, or the folds of a cross-validation

    @property
    def standard_errors(self) -> float:
        """How many standard errors the mean lies from 0 (inf for an exact, noiseless difference)."""
        if self.standard_error == 0:
            return 0.0 if self.mean == 0 else math.copysign(math.inf, self.mean)
        return self.mean / self.standard_error

    def is_clear(self, threshold: float = CLEAR_AT) -> bool:
        """True when the mean difference lies more than `threshold` standard errors from 0."""
        return abs(self.standard_errors) > threshold

    def describe(self, if_higher: str, if_lower: str, unit: str = "Dice") -> str:
        """The difference in words: `if_higher` (after above before) or `if_lower`, with its size,
        when it is clear; otherwise that the two cannot be told apart."""
        if not self.is_clear():
            return (f"no clear difference: {abs(self.mean):.3f} {unit}, {abs(self.standard_errors):.1f} paired standard "
                    f"errors, within the noise of {self.count} {self.pairs}")
        return (f"{if_higher if self.mean > 0 else if_lower}, by {abs(self.mean):.3f} {unit} "
                f"({abs(self.standard_errors):.1f} paired standard errors)")

    def __str__(self) -> str:
        places = decimal_places(self.standard_error)
        return (f"{self.mean:+.{places}f} ± {self.standard_error:.{places}f} ({self.standard_errors:+.1f} SE, "
                f"{self.count} {self.pairs})")


def decimal_places(value: float, significant: int = 2, at_least: int = 4) -> int:
    """Decimal places that show at least `significant` digits of `value`, and never fewer than
    `at_least` nor more than MAX_DECIMAL_PLACES: a standard error of 0.000027 (thousands of
    photos) must not print as 0.0000."""
    if value == 0 or not math.isfinite(value):
        return at_least
    return min(MAX_DECIMAL_PLACES, max(at_least, significant - 1 - math.floor(math.log10(abs(value)))))


def paired_difference(before, after, pairs: str = "photos") -> PairedDifference:
    """The mean per-photo difference `after - before` and its standard error (s / sqrt(n)).

    Args:
        before, after: one score per photo, the same photos in the same order.
        pairs: what the scores pair up, for the words: "photos", or "folds" for two recipes
            cross-validated on the same folds.

    Raises:
        ValueError: the two lists differ in length or hold fewer than two photos.
    """
    before, after = [float(value) for value in before], [float(value) for value in after]
    if len(before) != len(after):
        raise ValueError(f"paired scores must come from the same {pairs}: got {len(before)} and {len(after)} scores")
    if len(before) < 2:
        raise ValueError(f"a standard error needs at least two {pairs}, got {len(before)}")
    differences = [b - a for a, b in zip(before, after)]
    mean, error = statistics.fmean(differences), standard_error(differences)
    if error <= ROUNDING_NOISE * max(abs(mean), 1.0):  # the same shift on every photo, up to float rounding
        error = 0.0
    return PairedDifference(mean, error, len(differences), pairs)


def standard_error(values) -> float:
    """Standard error of a mean, s / sqrt(n) (0 for a single value)."""
    values = [float(value) for value in values]
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
