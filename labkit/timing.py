"""Timing work on a device: images per second, with the GPU's queue drained before and after."""

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait until `device` has finished what it was given (CUDA runs asynchronously; a CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], object], images_per_step: int, steps: int, device: torch.device,
                      warmup: int = 3) -> float:
    """How many images per second `step` processes, timed over `steps` calls after `warmup` untimed ones.

    Args:
        step: one training or inference step on `images_per_step` images.
        device: where `step` runs; on CUDA the clock starts and stops with the GPU's queue empty.
        warmup: untimed calls first (allocation, cuDNN's choice of algorithms, compilation).
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return images_per_step * steps / (time.perf_counter() - started)
