"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017).

From fresh weights, one training step per learning rate, each rate a constant factor above the
last; the smoothed training loss shows the range of rates at which the loss falls fastest. The
test stops early once the smoothed loss exceeds `blow_up` times its lowest value: larger rates
only diverge further.
"""

import torch

from labkit.train import SplitTensors, TrainingState, prepare_batch


def lr_range_test(state: TrainingState, train: SplitTensors, lrs, batch_size: int, smoothing: float = 0.3,
                  blow_up: float = 3.0) -> list[float]:
    """The smoothed training loss after a step at each of `lrs` (fewer when it blew up).

    The learning rate is set by hand before every step; `state`'s scheduler is never stepped.

    Args:
        smoothing: weight of each new loss in the running average (0.3: the last few steps).
        blow_up: stop once the smoothed loss exceeds this multiple of its lowest value.
    """
    state.model.train()
    smoothed: list[float] = []
    for lr in lrs:
        for group in state.optimizer.param_groups:
            group["lr"] = float(lr)
        batch = torch.randint(len(train), (batch_size,), generator=state.generator).to(state.device)
        images, masks = prepare_batch(state, train, batch)
        loss = state.loss_fn(state.model(images), masks)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        value = loss.item()
        smoothed.append(value if not smoothed else (1 - smoothing) * smoothed[-1] + smoothing * value)
        if smoothed[-1] > blow_up * min(smoothed):
            break
    return smoothed
