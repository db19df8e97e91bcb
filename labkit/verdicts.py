"""The rules by which the notebooks judge their experiments, each applied in one sentence.

A notebook states a rule before it runs an experiment; these functions apply it to what the run
measured and say the outcome, so the stored output carries the verdict and the prose never quotes
a number that the next run would contradict.
"""

import math
import statistics
from dataclasses import asdict, dataclass

import torch

from labkit.compare import CLEAR_AT, PairedDifference, paired_difference
from labkit.history import EpochRecord
from labkit.metrics import dice_from_counts

OVERFITTING_WINDOW = 10  # epochs at the end of training whose epoch-to-epoch changes measure the wobble
CLOCK_TOLERANCE = 0.2  # a time ratio within this share of the FLOPs ratio: the count predicted the clock
BOOTSTRAP_RESAMPLES = 1000
FLOAT32_ROUNDING = 1e-6  # labkit.metrics scores in float32: a gap or spread below this is rounding, i.e. 0


def decimals_to_tell_apart(a: float, b: float, fewest: int = 3, most: int = 6) -> int:
    """The fewest decimals (from `fewest`, at most `most`) at which `a` and `b` print differently, so a
    verdict that turns on which is larger never shows the two as the same number."""
    digits = fewest
    while digits < most and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return digits


@dataclass(frozen=True)
class OverfittingVerdict:
    """Notebook 03's rule applied to one training history.

    A model overfitted when its last valid Dice lies below its best by more than CLEAR_AT times the
    wobble (the standard deviation of the epoch-to-epoch changes of valid Dice over the last
    `window` epochs) while its training loss at the last epoch is below that at the best epoch.
    """

    best_epoch: int
    best_valid_dice: float
    last_epoch: int
    last_valid_dice: float
    best_train_loss: float
    last_train_loss: float
    wobble: float | None  # None: too few epochs to measure it
    window: int  # epoch-to-epoch changes the wobble was measured on

    @property
    def drop(self) -> float:
        return self.best_valid_dice - self.last_valid_dice

    @property
    def loss_fell(self) -> bool:
        return self.last_train_loss < self.best_train_loss

    @property
    def overfitted(self) -> bool | None:
        """True or False by the rule; None when the history is too short to apply it."""
        if self.wobble is None:
            return None
        return self.drop > CLEAR_AT * self.wobble and self.loss_fell

    def describe(self, model: str) -> str:
        """The verdict for `model` (a name for the reader) in one sentence."""
        if self.wobble is None:
            return f"{model}: {self.last_epoch} epochs are too few to apply the overfitting rule."
        if self.drop == 0:
            return f"{model}: no sign of overfitting; its last epoch ({self.last_epoch}) is its best."
        bar = CLEAR_AT * self.wobble
        digits = decimals_to_tell_apart(self.drop, bar)
        numbers = (f"its last valid Dice ({self.last_valid_dice:.3f}) lies {self.drop:.{digits}f} below its best "
                   f"({self.best_valid_dice:.3f}, epoch {self.best_epoch}); {CLEAR_AT:g} times its wobble over the last "
                   f"{self.window} epoch-to-epoch changes is {bar:.{digits}f}")
        losses = f"training loss {self.best_train_loss:.3f} at the best epoch, {self.last_train_loss:.3f} at the last"
        if self.overfitted:
            return f"{model} overfitted: {numbers}, and its {losses}."
        if self.drop > CLEAR_AT * self.wobble:
            return f"{model}: valid Dice fell clearly, but not by overfitting, since its training loss did not fall: {numbers}; {losses}."
        return f"{model}: no clear overfitting: {numbers}."

    def to_dict(self) -> dict:
        return {**asdict(self), "drop": self.drop, "overfitted": self.overfitted}


def overfitting(history: list[EpochRecord], window: int = OVERFITTING_WINDOW) -> OverfittingVerdict:
    """Apply the overfitting rule (see `OverfittingVerdict`) to a training history.

    Args:
        history: the epochs of one run, in order (`CheckpointInfo.history` of its last.pt).
        window: how many of the last epoch-to-epoch changes measure the wobble; fewer when the run
            is shorter, and at least two are needed.
    """
    if not history:
        raise ValueError("the history is empty: no epoch has finished yet")
    if window < 2:
        raise ValueError(f"window must be at least 2 epoch-to-epoch changes, got {window}")
    best = max(history, key=lambda record: record.valid_dice)  # the first of equal maxima, as fit keeps it
    last = history[-1]
    changes = [after.valid_dice - before.valid_dice for before, after in zip(history, history[1:])][-window:]
    wobble = statistics.stdev(changes) if len(changes) >= 2 else None
    return OverfittingVerdict(best.epoch, best.valid_dice, last.epoch, last.valid_dice, best.train_loss,
                              last.train_loss, wobble, len(changes))


def clock_against_count(time_ratio: float, flops_ratio: float, model: str, reference: str,
                        tolerance: float = CLOCK_TOLERANCE) -> str:
    """Did the FLOPs count predict the measured time? One sentence by notebook 02's rule.

    Args:
        time_ratio: `model`'s time per image over `reference`'s.
        flops_ratio: `model`'s FLOPs per image over `reference`'s.
        tolerance: the share by which the two ratios may differ and still agree.
    """
    if time_ratio <= 0 or flops_ratio <= 0:
        raise ValueError(f"ratios must be positive, got time {time_ratio} and FLOPs {flops_ratio}")
    measured = f"{model} took {time_ratio:.2f}x {reference}'s time per image for {flops_ratio:.2f}x its FLOPs"
    share = time_ratio / flops_ratio - 1
    if abs(share) <= tolerance:
        return f"{measured}: within {tolerance:.0%} of each other, so the count predicted the clock."
    faster = "more" if share < 0 else "less"
    return (f"{measured}: the time ratio is {abs(share):.0%} {'below' if share < 0 else 'above'} the FLOPs ratio, "
            f"so {model} got {faster} arithmetic done per second than {reference}.")


def timed_apart(written: dict[str, dict]) -> str | None:
    """None when every model's times were measured on one day and device; else one sentence saying
    when and where each was, and why that matters.

    Args:
        written: model label -> `CheckpointInfo.written` ({"date", "device"}, {} where not recorded).
    """
    records = list(written.values())
    if all(records):
        reasons = [reason for key, reason in (("device", "different devices run at different speeds"),
                                              ("date", "a machine runs at another speed on another day"))
                   if len({record[key] for record in records}) > 1]
        if not reasons:
            return None
    places = "; ".join(f"{label} on {record['date']}, {record['device']}" if record else f"{label}: not recorded"
                       for label, record in written.items())
    if not all(records):
        return f"These times may not have been measured together ({places}), so the comparison may not hold."
    return f"These times were not measured together ({places}): {' and '.join(reasons)}."


def pooled_gap(counts: dict[str, torch.Tensor], resamples: int = BOOTSTRAP_RESAMPLES,
               seed: int = 0) -> PairedDifference:
    """Mean per-image Dice minus dataset-level (pooled) Dice, with a bootstrap standard error.

    Args:
        counts: per-photo `tp`, `fp`, `fn` (shape (N,)), as `SegmentationMeter.counts()` gives them.
        resamples: bootstrap resamples of the photos (drawn with replacement).
    """
    return pooled_gap_change({}, counts, resamples, seed)


def pooled_gap_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> PairedDifference:
    """How the gap (mean per image minus pooled Dice) moved from `before` to `after`, two scorings
    of the same photos in the same order, with a bootstrap standard error that resamples the
    photos of both together. An empty `before` is a gap of 0: the result is `after`'s own gap."""
    count = len(after["tp"])
    if count < 2:
        raise ValueError(f"a standard error needs at least two photos, got {count}")
    if before and len(before["tp"]) != count:
        raise ValueError(f"both scorings must count the same photos: got {len(before['tp'])} and {count}")
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2, got {resamples}")

    def gaps(rows: torch.Tensor) -> torch.Tensor:  # rows: (R, N) photo indices -> (R,) gaps
        total = torch.zeros(rows.shape[0], dtype=torch.float64)
        for sign, scoring in ((1, after), (-1, before)):
            if scoring:
                tp, fp, fn = (scoring[key].to(torch.float64)[rows] for key in ("tp", "fp", "fn"))
                per_image = dice_from_counts(tp, fp, fn).mean(-1)
                pooled = dice_from_counts(tp.sum(-1), fp.sum(-1), fn.sum(-1))
                total += sign * (per_image - pooled)
        return total

    generator = torch.Generator().manual_seed(seed)
    observed = gaps(torch.arange(count)[None]).item()
    spread = gaps(torch.randint(count, (resamples, count), generator=generator)).std().item()
    observed, spread = (value if abs(value) > FLOAT32_ROUNDING else 0.0 for value in (observed, spread))
    return PairedDifference(observed, spread, count)


def describe_pooled_gap(gap: PairedDifference, where: str) -> str:
    """The gap at one size in words, by the two-standard-error rule; `where` names the size."""
    numbers = f"mean per image - pooled Dice {gap} {where}"
    if not gap.is_clear():
        return f"{numbers}: no clear gap, so the errors fall on small and large pets alike, as far as this split can tell."
    heavier = "small" if gap.mean < 0 else "large"
    return f"{numbers}: the errors weigh more on photos with {heavier} pets."


def describe_gap_change(change: PairedDifference) -> str:
    """How the gap moved from the training size to the original size, in words."""
    numbers = f"the gap moved by {change} from the training size to the original size"
    if not change.is_clear():
        return f"{numbers}: not clearly, so the photos' resolution does not show in the pooled score here."
    side = "worse" if change.mean > 0 else "better"
    return (f"{numbers}: clearly, so the model does {side} on the high-resolution photos, whose pixels weigh "
            f"most in the pooled score at original size.")


def describe_seed_difference(reference: dict[str, float], variant: dict[str, float], runs: int) -> str:
    """A variant's mean valid Dice over seeds against its reference recipe's, by the lab's rule.

    The difference of the two means is clear when it exceeds CLEAR_AT standard errors,
    sqrt((sd_reference² + sd_variant²) / runs): separate runs, so unpaired. With three seeds
    the standard deviations are rough, and the rule is a screen, not a test.

    Args:
        reference, variant: {"mean": ..., "std": ...} over seeds, as `bench quality` summarises them.
        runs: seeds per recipe.
    """
    if runs < 2:
        raise ValueError(f"a spread over seeds needs at least two runs per recipe, got {runs}")
    difference = variant["mean"] - reference["mean"]
    error = math.sqrt((reference["std"] ** 2 + variant["std"] ** 2) / runs)
    errors = difference / error if error else math.copysign(math.inf, difference) if difference else 0.0
    numbers = f"{difference:+.3f} ± {error:.3f} ({errors:+.1f} SE, {runs} seeds each)"
    if abs(errors) <= CLEAR_AT:
        return f"{numbers}: within the spread over seeds"
    return f"{numbers}: clearly {'higher' if difference > 0 else 'lower'}"


def describe_fold_difference(reference: list[float], variant: list[float]) -> str:
    """A variant's valid Dice against its reference recipe's over the folds of one cross-validation.

    Both recipes held out the same folds, so the folds pair up: a fold of hard photos is hard for
    both, and the standard error of the per-fold differences leaves that shared part out. The
    difference is clear beyond CLEAR_AT of those standard errors.

    Args:
        reference, variant: valid Dice per fold, in the order of the folds.
    """
    difference = paired_difference(reference, variant, pairs="folds")
    if not difference.is_clear():
        return f"{difference}: within the spread over folds"
    return f"{difference}: clearly {'higher' if difference.mean > 0 else 'lower'}"
