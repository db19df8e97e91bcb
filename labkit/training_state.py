"""What one training run holds while it runs: the split on the device, the state every step reads
or changes, and the run itself (configuration, data, state, result so far).

`labkit.train` runs the loop over these and exports them; `labkit.resume` reads a saved run back
into them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from labkit.augment import AugmentConfig
from labkit.config import TrainConfig
from labkit.distributed import WorldInfo
from labkit.history import EpochRecord

# Optimizer options that depend on the device rather than on the run: a checkpoint written on a
# GPU (fused AdamW) must not carry them onto a CPU, or the other way round.
DEVICE_OPTIMIZER_OPTIONS = ("fused", "foreach", "capturable")


@dataclass
class SplitTensors:
    """A decoded split on the training device."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    masks: torch.Tensor  # (N, H, W) uint8: 0 background, 1 pet, IGNORE_INDEX not scored

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class TrainingData:
    train: SplitTensors
    valid: SplitTensors
    info: dict  # root, fingerprints, sizes: stored in checkpoints


@dataclass
class TrainingState:
    """Everything a training step reads or changes, built once by `train.build_training_state`."""

    model: nn.Module  # the weights that checkpoints save
    step_model: nn.Module  # what training steps call: the model, or its torch.compile wrapper
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # active only in fp16
    generator: torch.Generator  # shuffling draws (CPU, seeded alike on every rank)
    augment: AugmentConfig
    device: torch.device
    precision: str  # resolved: "fp32", "bf16" or "fp16"
    world: WorldInfo = field(default_factory=WorldInfo)  # one process unless torchrun started several
    augment_generator: torch.Generator | None = None  # augmentation draws: None shares `generator` (one process)

    def __post_init__(self) -> None:
        if self.augment_generator is None:
            self.augment_generator = self.generator

    def optimization_state(self) -> dict:
        """What an exact resume needs besides the weights."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}}

    def load_optimization_state(self, checkpoint: dict) -> None:
        self.optimizer.load_state_dict(with_device_options(checkpoint["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.generator.set_state(checkpoint["rng"]["generator"].cpu())
        torch.set_rng_state(checkpoint["rng"]["torch"].cpu())


def with_device_options(saved: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A saved optimizer state whose device-dependent options are this optimizer's own.

    `load_state_dict` replaces the param groups with the saved ones, options included, so a state
    saved with `fused=True` on a GPU would make every step on a CPU use the fused kernel."""
    groups = []
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups):
        groups.append({**saved_group, **{key: group[key] for key in DEVICE_OPTIMIZER_OPTIONS if key in group}})
    return {**saved, "param_groups": groups}


@dataclass
class TrainResult:
    run_dir: Path
    history: list[EpochRecord] = field(default_factory=list)
    best: EpochRecord | None = None
    interrupted: bool = False
    world: WorldInfo = field(default_factory=WorldInfo)  # which process of a torchrun this result is from

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"


@dataclass
class TrainingRun:
    """One call of `fit`: how it trains, on what, with which state, and what it has done so far."""

    config: TrainConfig
    data: TrainingData
    state: TrainingState
    result: TrainResult
    progress: bool = True  # progress bars (rank 0 only)
    on_epoch_end: Callable[[list[EpochRecord]], None] | None = None
