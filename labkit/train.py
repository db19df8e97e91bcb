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
from labkit.checkpoint import load_checkpoint, make_checkpoint
from labkit.config import TrainConfig
from labkit.device import autocast, grad_scaler, resolve_device, resolve_precision
from labkit.distributed import WorldInfo, data_parallel, process_group
from labkit.evaluate import meter_tensors, score_tensors
from labkit.history import EpochRecord, write_history
from labkit.losses import SegmentationLoss
from labkit.metrics import SegmentationMeter
from labkit.models import build_model
from labkit.pretrained import load_pretrained_encoder
from labkit.run_folder import INTERRUPTED, CheckpointWriter, claimed

LOSS_DISPLAY_STEPS = 10  # refresh the progress bar's loss every this many steps

# Fields that may differ between a run and its resumption without changing what is computed. The
# data root is compared resolved (None and the path it resolves to are the same data) and the
# precision too ("auto" and what it resolved to are the same precision).
RESUMABLE_DIFFERENCES = {"device", "compile", "output_dir", "data_root", "precision"}


# Optimizer options that depend on the device rather than on the run: a checkpoint written on a
# GPU (fused AdamW) must not carry them onto a CPU, or the other way round.
DEVICE_OPTIMIZER_OPTIONS = ("fused", "foreach", "capturable")


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
    """Everything a training step reads or changes, built once by `build_training_state`."""

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


def run_dir_for(config: TrainConfig) -> Path:
    """`checkpoints/<model>-<profile>/` unless the config names another folder or run."""
    return Path(config.output_dir or paths.checkpoints_dir()) / (config.run_name or f"{config.model}-{config.profile}")


def load_training_data(config: TrainConfig, device: torch.device, progress: bool = True) -> TrainingData:
    """Decode (or read from cache) the train and valid splits and move them to `device`."""
    root = data.resolve_root(config.data_root)
    splits = {}
    for split in ("train", "valid"):
        arrays = data.load_split(root, split, size=config.image_size, progress=progress)
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
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def checked_model(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """A model built elsewhere (a student's UNet), on `device`, once it is proven to hold exactly
    the weights of the model `config` names: checkpoints record `config.model` and its arguments,
    and must load into labkit's own class.

    Raises:
        ValueError: one line naming the first weight that is missing, extra or of another shape.
    """
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in build_model(config.model, **config.model_kwargs).state_dict().items()}
    given = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    described = f"config.model {config.model!r} with model_kwargs {config.model_kwargs}"
    for name in expected.keys() | given.keys():
        if expected.get(name) != given.get(name):
            problem = ("is missing" if name not in given else "is not in it" if name not in expected
                       else f"has shape {given[name]}, expected {expected[name]}")
            raise ValueError(f"the model given to fit does not match {described}: weight {name!r} {problem}; "
                             "build the model with the same arguments, or name the model it is in the config")
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def steps_per_epoch(batch_size: int, train_count: int) -> int:
    return max(1, train_count // batch_size)


def epoch_plan(config: TrainConfig, train_count: int, world_size: int = 1) -> list[int]:
    """The number of steps in each epoch: `config.epochs` whole epochs, or `config.train_steps`
    steps as whole epochs and a last, shorter one. Under torchrun a step takes `batch_size` photos
    on each of the `world_size` processes."""
    per_epoch = steps_per_epoch(config.batch_size * world_size, train_count)
    if config.train_steps is None:
        return [per_epoch] * config.epochs
    whole_epochs, rest = divmod(config.train_steps, per_epoch)
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
    images = data.normalize(images)
    if state.device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
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


def train_one_epoch(state: TrainingState, train: SplitTensors, batch_size: int, bar: tqdm | None = None,
                    steps: int | None = None) -> float:
    """One pass over shuffled training batches (the first `steps` of them, if given); returns the
    mean loss (over the images of all ranks)."""
    state.step_model.train()
    # Every batch's indices go to the device now, while the GPU is idle after validation: a copy
    # from ordinary CPU memory makes the CPU wait for the GPU, which inside the loop would stop
    # the CPU from queuing the next step while the GPU runs this one.
    batches = shuffled_batches(len(train), batch_size, state.generator, state.world)[:steps]
    batches = [indices.to(state.device) for indices in batches]
    total, seen = torch.zeros((), device=state.device), 0
    for step, indices in enumerate(batches, start=1):
        images, masks = prepare_batch(state, train, indices)
        total += training_step(state, images, masks) * len(indices)  # summed on the device
        seen += len(indices)
        if bar is not None:
            bar.update(1)
            if not bar.disable and (step % LOSS_DISPLAY_STEPS == 0 or step == len(batches)):
                bar.set_postfix(loss=f"{total.item() / seen:.4f}")
    total, seen = state.world.all_reduce_sum(total), int(state.world.all_reduce_sum(torch.tensor(seen)))
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


def run_epoch(state: TrainingState, training_data: TrainingData, config: TrainConfig, epoch: int,
              progress: bool = True) -> EpochRecord:
    """Train one epoch (numbered from 1) of the run's plan, then validate; returns its record."""
    steps = epoch_plan(config, len(training_data.train), state.world.world_size)[epoch - 1]
    reseed_rank_augmentation(state, config.seed, epoch)
    started = time.perf_counter()
    with tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not progress) as bar:
        train_loss = train_one_epoch(state, training_data.train, config.batch_size, bar, steps)
    seconds = time.perf_counter() - started
    valid = validate(state, training_data.valid, config.batch_size * 2)
    seen = min(len(training_data.train), steps * config.batch_size * state.world.world_size)
    return EpochRecord(epoch=epoch, lr=state.scheduler.get_last_lr()[0], train_loss=train_loss,
                       valid_dice=valid["dice"], valid_iou=valid["iou"], valid_dice_dataset=valid["dice_dataset"],
                       epoch_seconds=seconds, train_images_per_second=seen / seconds)


def config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """Fields in which `config` differs from a checkpoint's saved configuration, ignoring those
    that do not change the result (device, compile, output folder) and those callers compare
    resolved (data root, precision)."""
    current, saved = (json.loads(json.dumps(values)) for values in (config.to_dict(), saved))  # tuples -> lists
    return sorted(key for key in current if key not in RESUMABLE_DIFFERENCES and saved.get(key) != current[key])


def check_resumable(last: dict, path: Path, state: TrainingState, config: TrainConfig,
                    training_data: TrainingData) -> None:
    """Refuse a `last.pt` that was trained differently: another configuration or data, another
    precision, or another number of processes (the batch of a step and the schedule depend on it).

    Raises:
        ValueError: one line saying how it differs and what to do.
    """
    differences = config_differences(last["config"], config)
    if last["data"]["root"] != training_data.info["root"]:
        differences.append("data_root")
    if differences:
        raise ValueError(f"cannot resume from {path}: the configuration differs in {differences}; "
                         "resume with the saved configuration or start a new run (another run_name)")
    saved_precision = last.get("precision", state.precision)
    if saved_precision != state.precision:
        raise ValueError(f"cannot resume from {path}: it was trained in {saved_precision} and this run would use "
                         f"{state.precision} on {state.device}; resume with --precision {saved_precision} "
                         "(precision=...) or start a new run (another run_name)")
    saved_world = last.get("world_size", 1)
    if saved_world != state.world.world_size:
        raise ValueError(f"cannot resume from {path}: it was trained by {saved_world} process(es) and this run has "
                         f"{state.world.world_size}; resume with {saved_world} (torchrun: nodes x processes per node; "
                         "1: without torchrun) or start a new run (another run_name)")


def resume_from_last(state: TrainingState, run_dir: Path, config: TrainConfig,
                     training_data: TrainingData) -> tuple[int, list[EpochRecord], EpochRecord | None]:
    """Load `last.pt` into the model and the optimisation state; returns the epoch to continue
    from, the history so far and the best record. Under torchrun every rank reads it.

    A run may move between devices (a CPU laptop and a GPU, one GPU and another) as long as it
    keeps its precision, so the loss scaler's state and the numbers stay meaningful.

    Raises:
        ValueError: the saved run was trained differently; one line saying how.
    """
    path = run_dir / "last.pt"
    last = load_checkpoint(path, map_location=state.device)
    check_resumable(last, path, state, config, training_data)
    state.model.load_state_dict(last["state_dict"])
    state.load_optimization_state(last)
    history = [EpochRecord.from_dict(row) for row in last["history"]]
    best = EpochRecord.from_dict(last["best"]) if last.get("best") else None
    return last["epoch"], history, best


def fit(config: TrainConfig, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[list[EpochRecord]], None] | None = None, model: nn.Module | None = None) -> TrainResult:
    """Train `config.model` on the train split, validating on the valid split every epoch.

    The run folder is claimed first (refused if another run trains into it or it cannot be
    written), before any photo is decoded. Under torchrun every process calls `fit` (see the
    module's docstring); rank 0 alone claims the folder, writes into it and shows progress.

    Args:
        config: every hyperparameter (see `labkit.config.make_config`).
        resume: continue from `<run_dir>/last.pt` with the identical schedule.
        progress: show tqdm progress bars.
        on_epoch_end: called with the history so far after every epoch (live plots in notebooks),
            on every rank.
        model: train this model (a student's own UNet, say) instead of building `config.model`;
            it must have exactly that model's weights (see `checked_model`), and is trained in place.
    """
    with process_group(resolve_device(config.device)) as world, claimed_by_main(run_dir_for(config), world) as run_dir:
        progress = progress and world.is_main
        if model is not None:  # checked before any photo is decoded
            model = checked_model(model, config, world.device)
        with world.main_first():  # rank 0 fills the decoded-image cache that the others then read
            training_data = load_training_data(config, world.device, progress)
        if model is None:
            model = build_training_model(config, world.device)
        state = build_training_state(config, model, len(training_data.train), world)
        result = TrainResult(run_dir=run_dir, world=world)
        start_epoch = 0
        if resume:
            start_epoch, result.history, result.best = resume_from_last(state, run_dir, config, training_data)
        return train_epochs(state, training_data, config, result, start_epoch, progress, on_epoch_end)


def claimed_by_main(run_dir: Path, world: WorldInfo):
    """`claimed(run_dir)` on rank 0, which alone writes into the folder; the other ranks only read it."""
    return claimed(run_dir) if world.is_main else contextlib.nullcontext(run_dir)


def train_epochs(state: TrainingState, training_data: TrainingData, config: TrainConfig, result: TrainResult,
                 start_epoch: int, progress: bool, on_epoch_end) -> TrainResult:
    """Epochs `start_epoch + 1` to the last of the plan; rank 0 writes checkpoints and history as they end."""
    writer = CheckpointWriter(result.run_dir, saved_epoch=start_epoch)
    epoch_count = len(epoch_plan(config, len(training_data.train), state.world.world_size))

    def snapshot(**extra) -> dict:
        best = result.best.to_dict() if result.best else {}
        return make_checkpoint(config.model, config.model_kwargs, state.model, config=config.to_dict(),
                               data=training_data.info, precision=state.precision,
                               world_size=state.world.world_size,
                               history=[record.to_dict() for record in result.history], best=best,
                               epoch=len(result.history), **extra)

    def save(improved: bool, final: bool) -> None:
        """The end of an epoch on disk: the best weights (to memory), last.pt when due, the history."""
        if improved:
            writer.pending_best = snapshot()
        if final or writer.due():
            writer.write_last(snapshot(**state.optimization_state()))
        write_history(result.history, result.run_dir)

    epochs = tqdm(range(start_epoch, epoch_count), desc=config.model, unit="epoch", initial=start_epoch,
                  total=epoch_count, disable=not progress)
    try:
        for epoch in epochs:
            record = run_epoch(state, training_data, config, epoch + 1, progress)
            result.history.append(record)
            improved = result.best is None or record.valid_dice > result.best.valid_dice
            if improved:
                result.best = record
            if state.world.is_main:
                save(improved, final=epoch + 1 == epoch_count)
            epochs.set_postfix(loss=f"{record.train_loss:.4f}", valid_dice=f"{record.valid_dice:.4f}")
            if on_epoch_end is not None:
                on_epoch_end(result.history)
    except KeyboardInterrupt:
        result.interrupted = True
        if state.world.is_main:
            save_interrupted(writer, result, snapshot(interrupted=True))
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
