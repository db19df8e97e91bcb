"""Training: one `fit(config)` for the notebooks and the command line alike.

The whole split lives in memory as uint8 (on the GPU when there is one); each step indexes a
batch, augments it on the same device and feeds the model, so no data loader sits between the
photos and the GPU. Every epoch ends with a validation pass; `last.pt` and (when validation Dice
improved) `best.pt` are written after it, as often as a tenth of the run's time allows (see
`CheckpointWriter`). Ctrl-C saves `interrupted.pt` and returns what was done so far.
"""

import contextlib
import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from labkit import data, paths
from labkit.augment import AugmentConfig, augment_batch
from labkit.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from labkit.config import TrainConfig
from labkit.device import autocast, resolve_device, resolve_precision
from labkit.evaluate import score_tensors
from labkit.losses import SegmentationLoss
from labkit.models import build_model
from labkit.pretrained import load_pretrained_encoder

LOSS_DISPLAY_STEPS = 10  # refresh the progress bar's loss every this many steps

# Fields that may differ between a run and its resumption without changing the result. The data
# root is compared after resolving it (None and the path it resolves to are the same data).
RESUMABLE_DIFFERENCES = {"device", "compile", "output_dir", "data_root"}

CHECKPOINT_TIME_SHARE = 0.1  # writing checkpoints may take at most this share of a run's time


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    interrupted: bool = False

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"


@dataclass
class TrainingData:
    train_images: torch.Tensor  # (N, 3, H, W) uint8 on the training device
    train_masks: torch.Tensor  # (N, H, W) uint8
    valid_images: torch.Tensor
    valid_masks: torch.Tensor
    info: dict  # root, fingerprints, sizes: stored in checkpoints


def run_dir_for(config: TrainConfig) -> Path:
    """`checkpoints/<model>-<profile>/` unless the config names another folder or run."""
    return Path(config.output_dir or paths.checkpoints_dir()) / (config.run_name or f"{config.model}-{config.profile}")


def load_training_data(config: TrainConfig, device: torch.device, progress: bool = True) -> TrainingData:
    """Decode (or read from cache) the train and valid splits and move them to `device`."""
    root = data.resolve_root(config.data_root)
    train = data.load_split(root, "train", size=config.image_size, progress=progress)
    valid = data.load_split(root, "valid", size=config.image_size, progress=progress)
    train_images, train_masks = data.to_tensors(train, border=config.border, device=device)
    valid_images, valid_masks = data.to_tensors(valid, border=config.border, device=device)
    if config.train_limit is not None:
        train_images, train_masks = train_images[: config.train_limit], train_masks[: config.train_limit]
    info = {
        "root": str(root),
        "synthetic": data.is_synthetic(root),
        "image_size": config.image_size,
        "train_images": len(train_images),
        "valid_images": len(valid_images),
        "train_fingerprint": train.fingerprint,
        "valid_fingerprint": valid.fingerprint,
    }
    return TrainingData(train_images, train_masks, valid_images, valid_masks, info)


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    model = build_model(config.model, **config.model_kwargs)
    if config.pretrained:
        load_pretrained_encoder(model, config.pretrained)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def shuffled_batches(count: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one epoch. The last partial batch is dropped (batch norm dislikes a batch
    of one) unless the split is smaller than one batch."""
    order = torch.randperm(count, generator=generator)
    full = count // batch_size
    if full == 0:
        return [order]
    return list(order[: full * batch_size].split(batch_size))


def steps_per_epoch(config: TrainConfig, train_count: int) -> int:
    return max(1, train_count // config.batch_size)


def train_one_epoch(model, batches, training_data, loss_fn, optimizer, scheduler, scaler, generator,
                    config: TrainConfig, device, dtype, bar) -> float:
    """One pass over the training batches; returns the mean loss."""
    model.train()
    augment = AugmentConfig(strength=config.augment_strength)
    total, seen = torch.zeros((), device=device), 0
    # Every batch's indices go to the device now, while the GPU is idle after validation: a copy
    # from ordinary CPU memory makes the CPU wait for the GPU, which inside the loop would stop
    # the CPU from queuing the next step while the GPU runs this one.
    batches = [indices.to(device) for indices in batches]
    for step, indices in enumerate(batches, start=1):
        images = training_data.train_images[indices].float().div_(255)  # (B, 3, H, W) in [0, 1]
        masks = training_data.train_masks[indices]  # (B, H, W)
        images, masks = augment_batch(images, masks, augment, generator=generator)
        images = data.normalize(images)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        loss = training_step(model, images, masks, loss_fn, optimizer, scaler, device, dtype)
        scheduler.step()
        total += loss * len(indices)  # stays on the device: reading it every step would stall a GPU
        seen += len(indices)
        bar.update(1)
        if not bar.disable and (step % LOSS_DISPLAY_STEPS == 0 or step == len(batches)):
            bar.set_postfix(loss=f"{total.item() / seen:.4f}")
    return total.item() / seen


def training_step(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn: nn.Module,
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, device, dtype) -> torch.Tensor:
    """Forward, backward and one optimiser step; returns the loss, detached, on the device."""
    with autocast(device, dtype):
        loss = loss_fn(model(images), masks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def write_history(history: list[dict], run_dir: Path) -> None:
    """history.json and history.csv beside the checkpoints, for plots and spreadsheets."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    if history:
        with open(run_dir / "history.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)


def config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """Fields in which `config` differs from a checkpoint's saved configuration, ignoring those
    that do not change the result (device, compile, output folder) and the data root, which
    callers compare resolved (the checkpoint's `data["root"]`)."""
    current, saved = (json.loads(json.dumps(values)) for values in (config.to_dict(), saved))  # tuples -> lists
    return sorted(key for key in current if key not in RESUMABLE_DIFFERENCES and saved.get(key) != current[key])


@dataclass
class Optimization:
    """Everything that changes weights, and must be saved for an exact resume."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # shuffling and augmentation

    def state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}}

    def load_state(self, checkpoint: dict) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.generator.set_state(checkpoint["rng"]["generator"].cpu())
        torch.set_rng_state(checkpoint["rng"]["torch"].cpu())


def build_optimization(model: nn.Module, config: TrainConfig, train_count: int, device, dtype) -> Optimization:
    """AdamW (fused on CUDA) with a one-cycle schedule: warm-up, then cosine annealing."""
    total_steps = config.epochs * steps_per_epoch(config, train_count)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # only fp16 needs loss scaling
    return Optimization(optimizer, scheduler, scaler, torch.Generator().manual_seed(config.seed))


def resume_from_last(run_dir: Path, config: TrainConfig, training_data: TrainingData, model: nn.Module,
                     optimization: Optimization, result: TrainResult, device) -> int:
    """Load `last.pt` into the model and optimisation state; returns the epoch to continue from."""
    last = load_checkpoint(run_dir / "last.pt", map_location=device)
    differences = config_differences(last["config"], config)
    if last["data"]["root"] != training_data.info["root"]:
        differences.append("data_root")
    if differences:
        raise ValueError(f"cannot resume from {run_dir / 'last.pt'}: the configuration differs in {differences}; "
                         "resume with the saved configuration or start a new run (another run_name)")
    model.load_state_dict(last["state_dict"])
    optimization.load_state(last)
    result.history, result.best = last["history"], last["best"]
    return last["epoch"]


class TimeShare:
    """Lets optional work (writing checkpoints, redrawing plots) run only while it has taken at
    most `share` of the time since this object was made."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.started = time.perf_counter()
        self.spent = 0.0

    def allows(self) -> bool:
        return self.spent <= self.share * (time.perf_counter() - self.started)

    @contextlib.contextmanager
    def spending(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent += time.perf_counter() - started


class CheckpointWriter:
    """Writes `best.pt` and `last.pt` into a run folder, spending at most CHECKPOINT_TIME_SHARE
    of the run's time on it.

    On a CPU an epoch takes seconds and both files are written after every epoch. On a GPU an
    epoch of a small split takes a fraction of a second, while `last.pt` (weights plus optimiser
    state, 200-280 MB for the gpu-profile models) takes about 0.4 s to write, so writing every
    epoch would more than double the run. Then epochs are skipped between writes: the best
    weights are copied to memory the moment they improve and written at the next write, so a
    skipped write only moves the resume point back by a few seconds of training.
    """

    def __init__(self, run_dir: Path, saved_epoch: int = 0) -> None:
        self.run_dir = run_dir
        self.time_share = TimeShare(CHECKPOINT_TIME_SHARE)
        self.pending_best: dict | None = None  # best weights not yet on disk
        self.saved_epoch = saved_epoch  # the epoch `last.pt` holds

    def due(self) -> bool:
        return self.time_share.allows()

    def write(self, name: str, checkpoint: dict) -> None:
        with self.time_share.spending():
            save_checkpoint(checkpoint, self.run_dir / name)

    def write_best(self) -> None:
        if self.pending_best is not None:
            self.write("best.pt", self.pending_best)
            self.pending_best = None

    def write_last(self, checkpoint: dict) -> None:
        self.write_best()
        self.write("last.pt", checkpoint)
        self.saved_epoch = checkpoint["epoch"]


def fit(config: TrainConfig, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[list[dict]], None] | None = None) -> TrainResult:
    """Train `config.model` on the train split, validating on the valid split every epoch.

    Args:
        config: every hyperparameter (see `labkit.config.make_config`).
        resume: continue from `<run_dir>/last.pt` with the identical schedule.
        progress: show tqdm progress bars.
        on_epoch_end: called with the history so far after every epoch (live plots in notebooks).
    """
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    training_data = load_training_data(config, device, progress)
    model = build_training_model(config, device)
    step_model = torch.compile(model) if config.compile else model
    optimization = build_optimization(model, config, len(training_data.train_images), device, dtype)
    loss_fn = SegmentationLoss(bce_weight=config.bce_weight, dice_weight=config.dice_weight)
    result = TrainResult(run_dir=run_dir_for(config))
    start_epoch = 0
    if resume:
        start_epoch = resume_from_last(result.run_dir, config, training_data, model, optimization, result, device)
    writer = CheckpointWriter(result.run_dir, saved_epoch=start_epoch)

    def snapshot(**extra) -> dict:
        return make_checkpoint(config.model, config.model_kwargs, model, config=config.to_dict(),
                               data=training_data.info, history=list(result.history), best=result.best,
                               epoch=len(result.history), metrics=result.best, **extra)

    epochs = tqdm(range(start_epoch, config.epochs), desc=config.model, unit="epoch", initial=start_epoch,
                  total=config.epochs, disable=not progress)
    try:
        for epoch in epochs:
            row = run_epoch(epoch, model, step_model, training_data, loss_fn, optimization, config, device, dtype,
                            progress)
            result.history.append(row)
            if not result.best or row["valid_dice"] > result.best["valid_dice"]:
                result.best = {key: row[key] for key in ("epoch", "valid_dice", "valid_iou", "valid_dice_dataset")}
                writer.pending_best = snapshot()
            if epoch + 1 == config.epochs or writer.due():
                writer.write_last(snapshot(**optimization.state()))
            write_history(result.history, result.run_dir)
            epochs.set_postfix(loss=f"{row['train_loss']:.4f}", valid_dice=f"{row['valid_dice']:.4f}")
            if on_epoch_end is not None:
                on_epoch_end(result.history)
    except KeyboardInterrupt:
        result.interrupted = True
        writer.write_best()
        writer.write("interrupted.pt", snapshot(interrupted=True))
        write_history(result.history, result.run_dir)
        if writer.saved_epoch:
            resumable = f"resume=True / --resume continues after epoch {writer.saved_epoch}, the one last.pt holds."
        else:
            resumable = "no epoch was saved to last.pt yet, so train again from the start."
        tqdm.write(f"Interrupted: weights saved to {result.run_dir / 'interrupted.pt'}; {resumable}")
    finally:
        epochs.close()
    return result


def run_epoch(epoch: int, model: nn.Module, step_model: nn.Module, training_data: TrainingData,
              loss_fn: nn.Module, optimization: Optimization, config: TrainConfig, device, dtype,
              progress: bool) -> dict:
    """Train one epoch with `step_model` (the model, or its `torch.compile` wrapper), then validate
    the plain model; returns the epoch's row of the history.

    Validation runs eagerly because a compiled model would compile again for eval mode and for
    the last, smaller batch, which costs more than validating a few hundred photos."""
    batches = shuffled_batches(len(training_data.train_images), config.batch_size, optimization.generator)
    started = time.perf_counter()
    with tqdm(total=len(batches), desc=f"epoch {epoch + 1}", leave=False, disable=not progress) as bar:
        train_loss = train_one_epoch(step_model, batches, training_data, loss_fn, optimization.optimizer,
                                     optimization.scheduler, optimization.scaler, optimization.generator,
                                     config, device, dtype, bar)
    seconds = time.perf_counter() - started
    valid = score_tensors(model, training_data.valid_images, training_data.valid_masks,
                          batch_size=config.batch_size * 2, precision=config.precision)
    return {"epoch": epoch + 1, "lr": optimization.scheduler.get_last_lr()[0], "train_loss": train_loss,
            "valid_dice": valid["dice"], "valid_iou": valid["iou"], "valid_dice_dataset": valid["dice_dataset"],
            "epoch_seconds": seconds, "train_images_per_second": sum(len(b) for b in batches) / seconds}
