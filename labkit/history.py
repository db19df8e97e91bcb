"""What one epoch of training measured, and the history files written beside the checkpoints."""

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

from labkit.files import FREE_SPACE_AND_RESUME, write_atomically


@dataclass(frozen=True)
class EpochRecord:
    """One row of a training history: the epoch's training loss and its validation scores."""

    epoch: int  # 1-based
    lr: float  # the learning rate at the end of the epoch
    train_loss: float  # mean over the epoch's training images
    valid_dice: float  # mean per-image Dice on the valid split: the number best.pt is chosen by
    valid_iou: float
    valid_dice_dataset: float  # Dice of all valid pixels pooled
    epoch_seconds: float  # training time of the epoch, validation excluded
    train_images_per_second: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EpochRecord":
        """A record from a checkpoint's or history.json's row (unknown keys are ignored)."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def write_history(history: list[EpochRecord], run_dir: Path) -> None:
    """history.json and history.csv beside the checkpoints, for plots and spreadsheets; each is
    replaced whole (`labkit.files.write_atomically`), so a full disk keeps the previous one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [record.to_dict() for record in history]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=[field.name for field in dataclasses.fields(EpochRecord)])
    writer.writeheader()
    writer.writerows(rows)
    for name, text in (("history.json", json.dumps(rows, indent=2)), ("history.csv", table.getvalue())):
        write_atomically(run_dir / name, lambda file: file.write(text.encode()), FREE_SPACE_AND_RESUME)


def read_history(run_dir: Path) -> list[EpochRecord]:
    """The records in a run folder's history.json."""
    return [EpochRecord.from_dict(row) for row in json.loads((Path(run_dir) / "history.json").read_text())]


@dataclass(frozen=True)
class BestAndLast:
    """The epoch with the highest valid Dice (what best.pt keeps) next to the last epoch."""

    best: EpochRecord
    last: EpochRecord

    @property
    def drop(self) -> float:
        """How much valid Dice the run lost after its best epoch (0 when the last epoch is the best)."""
        return self.best.valid_dice - self.last.valid_dice

    def to_dict(self) -> dict[str, float]:
        """The row a table or results.json shows: best_epoch, best_valid_dice, best_train_loss,
        last_epoch, last_valid_dice, last_train_loss and drop."""
        return {"best_epoch": self.best.epoch, "best_valid_dice": self.best.valid_dice,
                "best_train_loss": self.best.train_loss, "last_epoch": self.last.epoch,
                "last_valid_dice": self.last.valid_dice, "last_train_loss": self.last.train_loss, "drop": self.drop}


def best_and_last(history: list[EpochRecord]) -> BestAndLast:
    """The epoch with the highest valid Dice (the first of equal maxima, as `fit` keeps it) and the
    last epoch of a training history.

    Raises:
        ValueError: the history is empty.
    """
    if not history:
        raise ValueError("the history is empty: no epoch has finished yet")
    return BestAndLast(best=max(history, key=lambda record: record.valid_dice), last=history[-1])
