"""Stop a run whose loss or weights are no longer finite numbers, and say why in one line.

With too high a learning rate the loss grows without bound (2.8e24 at `--lr 1e6`) and then turns
NaN; every later step trains on NaN, and saving those weights as `best.pt` would throw away the
good epochs before. Each step's loss is checked on the device, without making the CPU wait for
the GPU; the flag is read once, at the end of the epoch, where the mean loss is read anyway. The
weights and batch-norm statistics are checked there too: at `--lr 1e6` the running variances
overflow steps before the loss does (losses of 1e17 to 1e25, all finite). The epoch then ends
before validation, so nothing from it is ever saved: `best.pt` and `last.pt` keep the last good
epochs.
"""

import math
from collections.abc import Callable

import torch
from torch import nn

NO_STEP = 0  # the flag's value while every loss of the epoch has been finite (steps count from 1)


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite numbers; the message names where and the fix."""

    def __init__(self, message: str, step: int, steps: int, loss: float) -> None:
        super().__init__(message)
        self.step, self.steps, self.loss = step, steps, loss


def no_step_yet(device: torch.device) -> torch.Tensor:
    """A fresh flag for `note_non_finite`, on the training device."""
    return torch.full((), NO_STEP, dtype=torch.long, device=device)


def note_non_finite(first: torch.Tensor, loss: torch.Tensor, step: int) -> torch.Tensor:
    """The flag after `step`: the first step of the epoch whose loss was not finite (computed on the
    device, so reading nothing)."""
    return torch.where((first == NO_STEP) & ~torch.isfinite(loss), step, first)


def check_epoch(total_loss: torch.Tensor, first: torch.Tensor, model: nn.Module, steps: int,
                all_ranks_sum: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor) -> None:
    """Raise if the epoch's summed loss or any weight or statistic of `model` is not finite, on
    any rank (`all_ranks_sum`: `WorldInfo.all_reduce_sum`), so that every rank stops together:
    batch-norm statistics differ between ranks where they are not synchronised (CPU processes).

    Raises:
        TrainingDiverged: with the step (of `steps`) where it happened and the loss; the caller
            adds the epoch and the fix (`stopped_at`).
    """
    tensors = [tensor for tensor in model.state_dict().values() if tensor.is_floating_point()]
    finite = torch.isfinite(total_loss) & torch.stack([tensor.isfinite().all() for tensor in tensors]).all()
    if int(all_ranks_sum((~finite).to(torch.int64))) == 0:  # one wait for the device, at the end of the epoch
        return
    step = int(first) or steps  # NO_STEP: every loss was finite, so the epoch's last step broke the weights
    raise TrainingDiverged(f"the loss or the weights are not finite after step {step} of {steps}", step, steps,
                           float(total_loss))


def stopped_at(error: TrainingDiverged, epoch: int, lr: float, best_epoch: int | None,
               last_epoch: int) -> TrainingDiverged:
    """The one-line message for a run stopped by `check_epoch` in `epoch`: where, the likely fix
    (a lower learning rate) and what the run folder keeps."""
    what = (f"the loss became {error.loss:g}" if not math.isfinite(error.loss)
            else "the weights or batch-norm statistics stopped being finite")
    kept = (f"best.pt keeps epoch {best_epoch} and last.pt epoch {last_epoch}" if best_epoch and last_epoch
            else f"best.pt keeps epoch {best_epoch}" if best_epoch else "no epoch had finished, so nothing was saved")
    return TrainingDiverged(f"training diverged: {what} at epoch {epoch}, step {error.step} of {error.steps}; the "
                            f"learning rate is likely too high: train again with a lower --lr (lr) than {lr:g}, "
                            f"e.g. {lr / 10:g} ({kept})", error.step, error.steps, error.loss)
