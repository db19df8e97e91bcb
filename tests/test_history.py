import pytest

from labkit.history import EpochRecord, best_and_last


def record(epoch: int, valid_dice: float, train_loss: float) -> EpochRecord:
    return EpochRecord(epoch=epoch, lr=1e-3, train_loss=train_loss, valid_dice=valid_dice, valid_iou=0.5,
                       valid_dice_dataset=0.5, epoch_seconds=1.0, train_images_per_second=10.0)


def test_best_and_last_finds_a_peak_before_the_end_and_the_drop_after_it():
    history = [record(1, 0.6, 1.0), record(2, 0.8, 0.8), record(3, 0.75, 0.6), record(4, 0.7, 0.5)]
    summary = best_and_last(history)
    assert (summary.best, summary.last) == (history[1], history[3])
    assert summary.drop == pytest.approx(0.1)


def test_best_and_last_keeps_the_first_of_equal_maxima_as_fit_does():
    summary = best_and_last([record(1, 0.8, 1.0), record(2, 0.8, 0.9)])
    assert summary.best.epoch == 1 and summary.drop == 0


def test_best_and_last_refuses_an_empty_history():
    with pytest.raises(ValueError):
        best_and_last([])


def test_best_and_last_as_a_table_row_names_each_number():
    row = best_and_last([record(1, 0.6, 1.0), record(2, 0.8, 0.8), record(3, 0.7, 0.5)]).to_dict()
    assert row == {"best_epoch": 2, "best_valid_dice": 0.8, "best_train_loss": 0.8, "last_epoch": 3,
                   "last_valid_dice": 0.7, "last_train_loss": 0.5, "drop": pytest.approx(0.1)}

