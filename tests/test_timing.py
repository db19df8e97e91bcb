"""labkit.timing: images per second, timed after the warm-up and with the device's queue drained."""

import pytest
import torch

from labkit import timing


def test_images_per_second_counts_only_the_timed_steps_after_the_warm_up(monkeypatch):
    clock = iter([10.0, 12.0])  # the timed steps take 2 s by this clock
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    speed = timing.images_per_second(lambda: calls.append(1), images_per_step=8, steps=5, device=torch.device("cpu"),
                                     warmup=2)
    assert len(calls) == 7 and speed == pytest.approx(8 * 5 / 2.0)


def test_on_cuda_the_clock_starts_and_stops_with_the_queue_empty(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("synchronize"))
    timing.images_per_second(lambda: events.append("step"), images_per_step=1, steps=2, device=torch.device("cuda"),
                             warmup=1)
    assert events == ["step", "synchronize", "step", "step", "synchronize"]
