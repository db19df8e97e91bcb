"""Training: one `fit(config)` for the notebooks, the command line and the benchmarks alike.

The data flows one way: the whole split lives in memory as uint8 (on the GPU when there is one);
each step indexes a batch, augments and normalises it on the same device and feeds the model, so
no data loader sits between the photos and the GPU. Everything a step reads or changes is one
`TrainingState`; `fit` builds it, runs epochs (train, then validate), and writes `last.pt` and
(when validation Dice improved) `best.pt` as often as a tenth of the run's time allows (see
`labkit.run_folder.CheckpointWriter`). Ctrl-C saves `interrupted.pt` and returns what was done so far.

Under `torchrun --nproc_per_node=N -m labkit train ...` every process runs `fit` on one device
(see `labkit.distributed`): each holds the whole split, takes its share of every batch of one
permutation all ranks draw alike, augments with its own generator, and DistributedDataParallel
averages the gradients, so a step sees `batch_size` x N photos at the same learning rate.
Validation is shared out and its pixel counts gathered, so every rank reports exactly the scores
one process would. Rank 0 alone claims the run folder, writes checkpoints and history and shows
progress. Without torchrun nothing of this happens.
"""

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from labkit import data, divergence, paths
from labkit.augment import AugmentConfig, augment_batch
from labkit.checkpoint import make_checkpoint
from labkit.config import TrainConfig
from labkit.device import (autocast, grad_scaler, memory_format_for, place, resolve_device, resolve_precision,
                           sync_free_region, timing_label)
from labkit.distributed import WorldInfo, data_parallel, process_group, processes_of
from labkit.evaluate import meter_tensors, score_tensors
from labkit.history import EpochRecord, write_history
from labkit.losses import SegmentationLoss
from labkit.memory import check_decoded_splits_fit
from labkit.metrics import SegmentationMeter
from labkit.models import build_model, check_same_weights
from labkit.models.resnet34_unet import zero_residual_branches
from labkit.pretrained import load_pretrained_encoder
from labkit.resume import resume_from_last
from labkit.run_folder import INTERRUPTED, CheckpointWriter, claimed
# The run's state is defined beside it (labkit.training_state) and used from here.
from labkit.training_state import SplitTensors, TrainingData, TrainingRun, TrainingState, TrainResult  # noqa: F401

LOSS_DISPLAY_STEPS = 10  # refresh the progress bar's loss every this many steps

def run_dir_for(config: TrainConfig) -> Path:
    """`checkpoints/<model>-<profile>/` unless the config names another folder or run."""
    return Path(config.output_dir or paths.checkpoints_dir()) / (config.run_name or f"{config.model}-{config.profile}")


def load_training_data(config: TrainConfig, device: torch.device, progress: bool = True) -> TrainingData:
    """Decode (or read from cache) the train and valid splits and move them to `device`."""
    root = data.resolve_root(config.data_root)
    trainval = data.load_split(root, "trainval", size=config.image_size, progress=progress)  # read and checked once
    splits = {}
    for split in ("train", "valid"):
        arrays = data.fold_of(trainval, split, config.valid_fold, config.folds)
        splits[split] = (arrays, SplitTensors(*data.to_tensors(arrays, border=config.border, device=device)))
    train = splits["train"][1]
    if config.train_limit is not None:
        train = SplitTensors(train.images[: config.train_limit], train.masks[: config.train_limit])
    info = {
        "root": str(root),
        "synthetic": data.is_synthetic(root),
        "image_size": config.image_size,
        "train_images": len(train),
        "valid_images": len(splits["valid"][1]),
        "train_fingerprint": splits["train"][0].fingerprint,
        "valid_fingerprint": splits["valid"][0].fingerprint,
    }
    return TrainingData(train, splits["valid"][1], info)


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The model `config` names, initialised from `config.seed`, on `device`."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, **config.model_kwargs)
    if config.pretrained:
        load_pretrained_encoder(model, config.pretrained)
    elif config.zero_init_residual:
        zero_residual_branches(model)
    return place(model, device)


def steps_per_epoch(batch_size: int, train_count: int) -> int:
    return max(1, train_count // batch_size)


def epoch_plan(config: TrainConfig, train_count: int, world_size: int = 1) -> list[int]:
    """The number of steps in each epoch: `config.epochs` whole epochs, or `config.train_steps`
    steps as whole epochs and a last, shorter one; with both, `config.epochs` epochs but no more
    than `config.train_steps` steps (a small dataset gets its epochs, a large one a bounded wait).
    Under torchrun a step takes `batch_size` photos on each of the `world_size` processes."""
    per_epoch = steps_per_epoch(config.batch_size * world_size, train_count)
    steps = config.train_steps if config.epochs is None else per_epoch * config.epochs
    if config.train_steps is not None:
        steps = min(steps, config.train_steps)
    whole_epochs, rest = divmod(steps, per_epoch)
    return [per_epoch] * whole_epochs + ([rest] if rest else [])


def build_training_state(config: TrainConfig, model: nn.Module, train_count: int,
                         world: WorldInfo | None = None) -> TrainingState:
    """AdamW (fused on CUDA) with a one-cycle schedule (warm-up, then cosine annealing), the loss,
    a loss scaler for fp16 and the seeded generators, for `model` on its own device.

    Args:
        world: the processes of a torchrun (`labkit.distributed.init_from_env`); None: one process.
    """
    device = next(model.parameters()).device
    world = world if world is not None else WorldInfo(device=device)
    if train_count < world.world_size:
        raise ValueError(f"the training split has {train_count} photos, fewer than the {world.world_size} processes "
                         "training on it; start fewer processes (--nproc_per_node) or train on more photos")
    precision = resolve_precision(config.precision, device)
    model, step_model = data_parallel(model, world)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=sum(epoch_plan(config, train_count, world.world_size)),
        pct_start=config.warmup_fraction,
    )
    rank_generator = torch.Generator().manual_seed(config.seed + world.rank) if world.distributed else None
    return TrainingState(
        model=model, step_model=torch.compile(step_model) if config.compile else step_model,
        loss_fn=SegmentationLoss(bce_weight=config.bce_weight, dice_weight=config.dice_weight),
        optimizer=optimizer, scheduler=scheduler, scaler=grad_scaler(device, precision),
        generator=torch.Generator().manual_seed(config.seed), augment=AugmentConfig(strength=config.augment_strength),
        device=device, precision=precision, world=world, augment_generator=rank_generator,
    )


def shuffled_batches(count: int, batch_size: int, generator: torch.Generator,
                     world: WorldInfo | None = None) -> list[torch.Tensor]:
    """Index batches for one epoch. The last partial batch is dropped (batch norm dislikes a batch
    of one) unless the split is smaller than one batch.

    Under torchrun every rank draws the same permutation (the generators are seeded alike) and
    takes its own `batch_size` photos of each batch of `batch_size` x world_size, so the ranks'
    shares partition the photos an epoch uses."""
    world = world if world is not None else WorldInfo()
    order = torch.randperm(count, generator=generator)
    full = count // (batch_size * world.world_size)
    if full == 0:
        return [order[world.rank :: world.world_size]]
    return list(order[: full * batch_size * world.world_size].view(full, world.world_size, batch_size)[:, world.rank])


def prepare_batch(state: TrainingState, train: SplitTensors, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos and masks of one batch, augmented and normalised on the training device."""
    images = train.images[indices].float().div_(255)  # (B, 3, H, W) in [0, 1]
    masks = train.masks[indices]  # (B, H, W)
    images, masks = augment_batch(images, masks, state.augment, generator=state.augment_generator)
    images = data.normalize(images).contiguous(memory_format=memory_format_for(state.device))
    return images, masks


def training_step(state: TrainingState, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Forward, backward, one optimiser step and one scheduler step; returns the loss, detached,
    on the device (reading it would make the CPU wait for the GPU)."""
    with autocast(state.device, state.precision):
        loss = state.loss_fn(state.step_model(images), masks)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    return loss.detach()


def pinned_scalar() -> torch.Tensor:
    """A 0-d float tensor in pinned (page-locked) host memory, which a GPU copies into without the
    CPU waiting."""
    return torch.zeros((), pin_memory=True)


class RunningLoss:
    """The epoch's mean training loss on its progress bar, shown without making the CPU wait for
    the GPU: on CUDA the running sum is copied to pinned host memory without waiting and shown at
    a later refresh, once the copy has landed; on a CPU it is read at once."""

    def __init__(self, device: torch.device) -> None:
        self.on_gpu = device.type == "cuda"
        self.host = pinned_scalar() if self.on_gpu else None
        self.copy_done: torch.cuda.Event | None = None  # the copy in flight
        self.photos_in_copy = 0

    def refresh(self, bar: tqdm, total: torch.Tensor, seen: int) -> None:
        """Show the mean loss of the `seen` photos summed in `total` (on the device), or on CUDA
        the latest mean whose copy has arrived."""
        if not self.on_gpu:
            bar.set_postfix(loss=f"{total.item() / seen:.4f}")
            return
        if self.copy_done is not None and self.copy_done.query():  # asks, never waits
            bar.set_postfix(loss=f"{self.host.item() / self.photos_in_copy:.4f}")  # a host tensor: no sync
            self.copy_done = None
        if self.copy_done is None:
            self.host.copy_(total, non_blocking=True)
            self.copy_done = torch.cuda.Event()
            self.copy_done.record()
            self.photos_in_copy = seen


def train_one_epoch(state: TrainingState, train: SplitTensors, batch_size: int, bar: tqdm | None = None,
                    steps: int | None = None) -> float:
    """One pass over shuffled training batches (the first `steps` of them, if given); returns the
    mean loss (over the images of all ranks). The steps, progress bar included, never make the CPU
    wait for the GPU (`device.sync_free_region`): the CPU queues the next step while the GPU runs
    this one."""
    state.step_model.train()
    # Every batch's indices go to the device now, while the GPU is idle after validation: a copy
    # from ordinary CPU memory makes the CPU wait for the GPU.
    batches = shuffled_batches(len(train), batch_size, state.generator, state.world)[:steps]
    batches = [indices.to(state.device) for indices in batches]
    total, seen = torch.zeros((), device=state.device), 0
    shown = RunningLoss(state.device) if bar is not None and not bar.disable else None
    first_non_finite = divergence.no_step_yet(state.device)
    with sync_free_region(state.device):
        for step, indices in enumerate(batches, start=1):
            images, masks = prepare_batch(state, train, indices)
            loss = training_step(state, images, masks)
            total += loss * len(indices)  # summed on the device
            first_non_finite = divergence.note_non_finite(first_non_finite, loss, step)  # read at the epoch's end
            seen += len(indices)
            if bar is not None:
                bar.update(1)
                if shown is not None and (step % LOSS_DISPLAY_STEPS == 0 or step == len(batches)):
                    shown.refresh(bar, total, seen)
    total, seen = state.world.all_reduce_sum(total), int(state.world.all_reduce_sum(torch.tensor(seen)))
    divergence.check_epoch(total, first_non_finite, state.model, len(batches), state.world.all_reduce_sum)
    return total.item() / seen


def validate(state: TrainingState, valid: SplitTensors, batch_size: int) -> dict[str, float]:
    """Scores of the plain model on the valid split. It runs eagerly: a compiled model would
    compile again for eval mode and for the last, smaller batch, which costs more than validating
    a few hundred photos."""
    if state.world.distributed:
        return validate_shared(state, valid, batch_size)
    return score_tensors(state.model, valid.images, valid.masks, batch_size=batch_size, precision=state.precision)


def validate_shared(state: TrainingState, valid: SplitTensors, batch_size: int) -> dict[str, float]:
    """`validate` under torchrun: each rank scores its share of the photos with rank 0's weights, and
    the per-image pixel counts of all shares are gathered, so every score is exactly the one a
    single process computes from the same weights."""
    state.world.broadcast_from_main(state.model.buffers())  # on CPUs each rank's batch-norm statistics differ
    share = state.world.share(len(valid))
    counts = meter_tensors(state.model, valid.images[share], valid.masks[share], batch_size, state.precision).counts()
    gathered = {key: state.world.gather_shares(value, share, len(valid)) for key, value in counts.items()}
    return SegmentationMeter.from_counts(gathered).compute()


def reseed_rank_augmentation(state: TrainingState, seed: int, epoch: int) -> None:
    """Under torchrun each rank augments with its own generator, seeded `seed + rank` and moved on
    by world_size every epoch: no two ranks or epochs share draws, and a resumed run draws the same
    ones without last.pt holding every rank's generator state."""
    if state.world.distributed:
        state.augment_generator.manual_seed(seed + state.world.rank + state.world.world_size * (epoch - 1))


def run_epoch(run: TrainingRun, epoch: int) -> EpochRecord:
    """Train one epoch (numbered from 1) of the run's plan, then validate; returns its record."""
    state, train, config = run.state, run.data.train, run.config
    steps = epoch_plan(config, len(train), state.world.world_size)[epoch - 1]
    reseed_rank_augmentation(state, config.seed, epoch)
    started = time.perf_counter()
    with tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not run.progress) as bar:
        train_loss = train_one_epoch(state, train, config.batch_size, bar, steps)
    seconds = time.perf_counter() - started
    valid = validate(state, run.data.valid, config.batch_size * 2)
    seen = min(len(train), steps * config.batch_size * state.world.world_size)
    return EpochRecord(epoch=epoch, lr=state.scheduler.get_last_lr()[0], train_loss=train_loss,
                       valid_dice=valid["dice"], valid_iou=valid["iou"], valid_dice_dataset=valid["dice_dataset"],
                       epoch_seconds=seconds, train_images_per_second=seen / seconds)


def fit(config: TrainConfig, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[list[EpochRecord]], None] | None = None, model: nn.Module | None = None) -> TrainResult:
    """Train `config.model` on the train split, validating on the valid split every epoch.

    The run folder is claimed first (refused if another run trains into it or it cannot be
    written), before any photo is decoded. Under torchrun every process calls `fit` (see the
    module's docstring); rank 0 alone claims the folder, writes into it and shows progress.

    Args:
        config: every hyperparameter (see `labkit.config.make_config`).
        resume: continue from `<run_dir>/last.pt` with the identical schedule (see `labkit.resume`).
        progress: show tqdm progress bars.
        on_epoch_end: called with the history so far after every epoch (live plots in notebooks),
            on every rank.
        model: train this model (a student's own UNet, say) instead of building `config.model`;
            it must have exactly that model's weights (`models.check_same_weights`), and is
            trained in place.
    """
    check_decoded_splits_fit(config)  # before the folder is claimed: an impossible size is refused at once
    with process_group(resolve_device(config.device)) as world, claimed_by_main(run_dir_for(config), world) as run_dir:
        if model is not None:  # checked before any photo is decoded
            check_same_weights(model, config.model, config.model_kwargs)
            model = place(model, world.device)
        with world.main_first():  # rank 0 fills the decoded-image cache that the others then read
            training_data = load_training_data(config, world.device, progress and world.is_main)
        if model is None:
            model = build_training_model(config, world.device)
        run = TrainingRun(config=config, data=training_data,
                          state=build_training_state(config, model, len(training_data.train), world),
                          result=TrainResult(run_dir=run_dir, world=world), progress=progress and world.is_main,
                          on_epoch_end=on_epoch_end)
        return train_epochs(run, start_epoch=resume_from_last(run) if resume else 0)


def claimed_by_main(run_dir: Path, world: WorldInfo):
    """`claimed(run_dir)` on rank 0, which alone writes into the folder; the other ranks only read it."""
    return claimed(run_dir) if world.is_main else contextlib.nullcontext(run_dir)


def snapshot(run: TrainingRun, **extra) -> dict:
    """The run as a checkpoint: weights, configuration, data, precision and history, when and where
    it was written (its epochs' times were measured there, unless it resumed a run from elsewhere), plus `extra`."""
    result, state = run.result, run.state
    return make_checkpoint(run.config.model, run.config.model_kwargs, state.model, config=run.config.to_dict(),
                           data=run.data.info, precision=state.precision, world_size=state.world.world_size,
                           processes=processes_of(state.world, state.model, state.step_model),
                           history=[record.to_dict() for record in result.history],
                           best=result.best.to_dict() if result.best else {}, epoch=len(result.history),
                           written=timing_label(state.world.device), **extra)


def save_epoch(run: TrainingRun, writer: CheckpointWriter, improved: bool, final: bool) -> None:
    """The end of an epoch on disk: the best weights (to memory), last.pt when due, the history."""
    if improved:
        writer.pending_best = snapshot(run)
    if final or writer.due():
        writer.write_last(snapshot(run, **run.state.optimization_state()))
    write_history(run.result.history, run.result.run_dir)


def train_epochs(run: TrainingRun, start_epoch: int = 0) -> TrainResult:
    """Epochs `start_epoch + 1` to the last of the plan; rank 0 writes checkpoints and history as they end."""
    result, world = run.result, run.state.world
    writer = CheckpointWriter(result.run_dir, saved_epoch=start_epoch)
    epoch_count = len(epoch_plan(run.config, len(run.data.train), world.world_size))
    epochs = tqdm(range(start_epoch, epoch_count), desc=run.config.model, unit="epoch", initial=start_epoch,
                  total=epoch_count, disable=not run.progress)
    try:
        for epoch in epochs:
            record = run_epoch(run, epoch + 1)
            result.history.append(record)
            improved = result.best is None or record.valid_dice > result.best.valid_dice
            if improved:
                result.best = record
            if world.is_main:
                save_epoch(run, writer, improved, final=epoch + 1 == epoch_count)
            epochs.set_postfix(loss=f"{record.train_loss:.4f}", valid_dice=f"{record.valid_dice:.4f}")
            if run.on_epoch_end is not None:
                run.on_epoch_end(result.history)
    except KeyboardInterrupt:
        result.interrupted = True
        if world.is_main:
            save_interrupted(writer, result, snapshot(run, interrupted=True))
    except divergence.TrainingDiverged as diverged:
        if world.is_main:
            writer.write_best()  # the best epoch may still be in memory only; it is a good one
        raise divergence.stopped_at(diverged, epoch + 1, run.config.lr, result.best and result.best.epoch,
                                    writer.saved_epoch) from None
    finally:
        epochs.close()
    return result


def save_interrupted(writer: CheckpointWriter, result: TrainResult, checkpoint: dict) -> None:
    """After Ctrl-C: the pending best weights, `interrupted.pt` and the history, and how to go on."""
    writer.write_best()
    writer.write(INTERRUPTED, checkpoint)
    write_history(result.history, result.run_dir)
    if writer.saved_epoch:
        resumable = f"resume=True / --resume continues after epoch {writer.saved_epoch}, the one last.pt holds."
    else:
        resumable = "no epoch was saved to last.pt yet, so train again from the start."
    tqdm.write(f"Interrupted: weights saved to {result.run_dir / INTERRUPTED}; {resumable}")
