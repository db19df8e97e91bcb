"""The stages of `bench gpu-check`: what each runs and how it judges what it saw.

Each stage is a generator of results, so a stage cut short by its time budget keeps the results it
yielded. Path checks (fit, resume, torchrun) pass or fail; quality and speed are measured and
compared with their targets, which are recorded and never turned into a failure.
"""

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

import labkit
from labkit import allocator
from labkit.bench.check_data import QUALITY_TARGETS, CheckData
from labkit.bench.speed import SpeedCase, precision_label, speed_of
from labkit.config import TrainConfig, make_config
from labkit.device import host_syncs_forbidden
from labkit.models import MODELS

# What the estimate assumes of one H100/H200; none of it has been measured on one yet. Training
# speed is half the targets below; the rest is reasoned in docs/gpu-check.md.
ASSUMED = {
    "train_images_per_second": {"unet": 450, "resnet34_unet": 1250},  # 256 px, batch 32, bf16 eager
    "inference_speedup": 3,  # inference images/s over training's: no backward, no optimiser step
    "seconds_per_epoch": 0.1,  # validation's launch and read-out, progress bars, history, best weights
    "seconds_per_fit": 2,  # building the model and optimiser, reading the cache, the last checkpoint
    "first_use_seconds": {"unet": 10, "resnet34_unet": 15},  # cuDNN timing its algorithms for each shape
    "decoded_photos_per_second": 200,  # into the cache; measured 230 on this project's 2-core CPU
    "compile_seconds": {"unet": 35, "resnet34_unet": 55},  # a training step (forward and backward), by inductor
    "process_start_seconds": 25,  # a process under torchrun: Python, torch, CUDA, NCCL, cuDNN again
}
SPEED_TARGETS = {  # one H100/H200, 256 px, batch 32: the targets of the GPU work
    "train_images_per_second": {"unet": 900, "resnet34_unet": 2500},
    "end_to_end_share": 0.9,  # end-to-end training speed as a share of model-only
}


@dataclass
class StageResult:
    stage: str
    status: str  # "passed", "failed", "measured", "out of time" or "skipped"
    detail: str
    values: dict = field(default_factory=dict)


@dataclass
class CheckContext:
    """What every stage runs with: the form of the check, the device, the data, a scratch folder,
    and each stage's budget."""

    smoke: bool
    device: torch.device
    data: CheckData
    folder: Path  # scratch: run folders, deleted at the end
    budgets: dict[str, float] = field(default_factory=dict)  # seconds each stage may take, by name

    def run_settings(self, run_name: str) -> dict:
        """Where a run of the check trains and writes: the data at hand, the device, the scratch folder."""
        return {"data_root": str(self.data.root), "device": str(self.device), "output_dir": str(self.folder),
                "run_name": run_name}

    def path_config(self, model: str, run_name: str, **overrides) -> TrainConfig:
        """A short run for a path check: the `gpu` profile's model at its size (smoke: toy sizes)."""
        if self.smoke:
            return make_config(model, "smoke", **self.run_settings(run_name),
                               **{"image_size": 32, "epochs": 2, "train_limit": 16, **overrides})
        return make_config(model, "gpu", **self.run_settings(run_name), **{"epochs": 3, **overrides})

    def quality_config(self, model: str) -> TrainConfig:
        """The `gpu` profile on the data at hand (smoke: the smoke profile), its steps cut to what the
        stage's budget allows where the data is too big for it."""
        if self.smoke:
            return self.path_config(model, f"quality_{model}")
        settings = self.run_settings(f"quality_{model}")
        config = make_config(model, "gpu", **settings)
        affordable = affordable_steps(config, self.budgets.get(f"quality-{model}", math.inf))
        if planned_steps(config, self.data.photos["train"]) > affordable:
            config = make_config(model, "gpu", **settings, train_steps=affordable)
        return config

    def models(self, compiled: bool = False) -> list[str]:
        """The models a speed stage measures; compiled in the smoke form, the UNet alone (compiling
        the ResNet34 encoder takes minutes on a CPU)."""
        return ["unet"] if self.smoke and compiled else list(MODELS)

    def speed_case(self, model: str, compiled: bool) -> SpeedCase:
        """Training speed (model-only and end to end) and, eager, inference speed; compiled, the
        inference graph would be a second compilation, so it is left to `bench speed --compile`."""
        if self.smoke:
            return SpeedCase(model=model, profile="smoke", image_size=32, batch_size=4, precision="fp32",
                             compiled=compiled, device=str(self.device), steps=1, inference=not compiled)
        return SpeedCase(model=model, profile="gpu", image_size=256, batch_size=32, precision="auto",
                         compiled=compiled, device=str(self.device), steps=10, inference=not compiled)


def planned_steps(config: TrainConfig, train_count: int) -> int:
    from labkit.train import epoch_plan

    return sum(epoch_plan(config, min(train_count, config.train_limit or train_count)))


def affordable_steps(config: TrainConfig, seconds: float) -> float:
    """Optimiser steps that fit in 80% of `seconds` at the assumed training speed (inf: no limit)."""
    if math.isinf(seconds):
        return math.inf
    return max(1, int(0.8 * seconds * ASSUMED["train_images_per_second"][config.model] / config.batch_size))


def check_fit(context: CheckContext, precision: str) -> Iterator[StageResult]:
    """The real `fit` in one precision, progress bar on, its steps sync-free from the second epoch."""
    from labkit.checkpoint import load_checkpoint, load_trained
    from labkit.train import fit

    config = context.path_config("unet", f"fit_{precision}", precision=precision)
    with host_syncs_forbidden(warm_up=1) as syncs:
        result = fit(config, progress=True)
    trained = load_trained(result.best_checkpoint)
    scaler = load_checkpoint(result.last_checkpoint)["scaler"]
    losses = [record.train_loss for record in result.history]
    scaled = precision != "fp16" or bool(scaler)  # fp16 must have trained with an active loss scaler
    ran = all(map(math.isfinite, losses)) and len(losses) == config.epochs and trained.info.precision == precision
    on_cuda = context.device.type == "cuda"
    sync_free = syncs["checked"] == config.epochs - 1 if on_cuda else True
    synced = (f"{syncs['checked']} of {config.epochs} epochs' steps ran under sync debug mode 'error'" if on_cuda
              else "host syncs not checked: CUDA only")
    yield StageResult(f"fit-{precision}", "passed" if ran and scaled and sync_free else "failed",
                      f"{len(losses)} epochs in {trained.info.precision}, losses {[round(x, 4) for x in losses]}"
                      f"{', loss scale ' + format(scaler.get('scale', 0), 'g') if scaler else ''}; {synced}",
                      {"precision": trained.info.precision, "losses": losses, "sync_checked_epochs": syncs["checked"],
                       "loss_scaler": bool(scaler)})


def check_resume(context: CheckContext) -> Iterator[StageResult]:
    """Stop a run after epoch 1, resume it, and compare with the same run left alone."""
    from labkit.train import fit

    whole = fit(context.path_config("unet", "resume_whole", epochs=2), progress=False)

    def stop_after_first(history):
        if len(history) == 1:
            raise KeyboardInterrupt

    config = context.path_config("unet", "resume_stopped", epochs=2)
    fit(config, progress=False, on_epoch_end=stop_after_first)
    resumed = fit(config, resume=True, progress=False)
    difference = max(abs(a.train_loss - b.train_loss) for a, b in zip(whole.history, resumed.history))
    epochs = [record.epoch for record in resumed.history]
    # On a CPU the resumed run is bit-identical; GPU kernels that add with atomics are not, so a
    # small difference there is expected and reported.
    passed = epochs == [1, 2] and difference <= (0.0 if context.device.type == "cpu" else 0.05)
    yield StageResult("resume", "passed" if passed else "failed",
                      f"resumed epochs {epochs}; largest training-loss difference from the uninterrupted run "
                      f"{difference:.2e}", {"difference": difference})


def torchrun_command(context: CheckContext, output: Path) -> list[str]:
    """`torchrun --standalone --nproc_per_node=1 -m labkit train ...`: one process on one device."""
    config = context.path_config("unet", "torchrun", epochs=2)
    sizes = ["--image-size", str(config.image_size), "--batch-size", str(config.batch_size)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
            "-m", "labkit", "train", "--model", "unet", "--profile", config.profile, "--data-path", str(context.data.root),
            "--output", str(output), "--run-name", "torchrun", "--epochs", "2", *sizes, "--device", context.device.type]


def check_torchrun(context: CheckContext) -> Iterator[StageResult]:
    """One process under torchrun (NCCL, DDP and SyncBatchNorm on CUDA; gloo and DDP on a CPU)
    trains into one checkpoint, which then evaluates in this process."""
    from labkit.checkpoint import load_checkpoint
    from labkit.evaluate import evaluate

    output = context.folder / "torchrun"
    package_parent = str(Path(labkit.__file__).resolve().parents[1])  # this labkit, installed or not
    environment = allocator.environment_for_children(
        {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))})
    finished = run_to_the_end(torchrun_command(context, output), environment)
    if finished.returncode != 0:
        yield StageResult("torchrun", "failed", f"torchrun exited with {finished.returncode}: "
                                                f"{(finished.stderr.strip().splitlines() or [''])[-1]}",
                          {"stderr": finished.stderr[-4000:]})
        return
    checkpoint = output / "torchrun" / "best.pt"
    processes = load_checkpoint(checkpoint).get("processes", {})
    expected = ({"count": 1, "backend": "nccl", "data_parallel": True, "sync_batch_norm": True}
                if context.device.type == "cuda" else {"count": 1, "backend": "gloo", "data_parallel": True,
                                                       "sync_batch_norm": False})
    scores = evaluate(checkpoint, split="test", device=str(context.device), progress=False)
    passed = processes == expected and math.isfinite(scores.metrics["original"]["dice"])
    yield StageResult("torchrun", "passed" if passed else "failed",
                      f"trained as {processes}; its checkpoint scores test Dice "
                      f"{scores.metrics['original']['dice']:.4f} on {scores.info['images']} photos",
                      {"processes": processes, "expected": expected, "test_dice": scores.metrics["original"]["dice"]})


def run_to_the_end(command: list[str], environment: dict) -> subprocess.CompletedProcess:
    """Run `command` in its own process group, which is killed however this ends (a stage's time
    limit included), so no rank outlives the check."""
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def check_quality(context: CheckContext, model: str) -> Iterator[StageResult]:
    """One model trained with the `gpu` profile on the data at hand: valid and test Dice, wall time,
    against the target stated for that data."""
    from labkit.evaluate import evaluate
    from labkit.train import fit

    config = context.quality_config(model)
    started = time.perf_counter()
    result = fit(config, progress=False)
    seconds = time.perf_counter() - started
    scores = {split: evaluate(result.best_checkpoint, split=split, device=str(context.device),
                              progress=False).metrics["original"]["dice"] for split in ("valid", "test")}
    target = None if context.smoke or config.train_steps else (QUALITY_TARGETS[context.data.kind].test_dice or {}).get(model)
    verdict = "" if target is None else f"; target {target:.2f} {'met' if scores['test'] >= target else 'MISSED'}"
    steps = planned_steps(config, context.data.photos["train"])
    cut = f" (the profile cut to {steps} steps to fit the budget: no target)" if config.train_steps else ""
    yield StageResult(f"quality-{model}", "measured",
                      f"valid Dice {scores['valid']:.4f}, test Dice {scores['test']:.4f}{verdict}; {len(result.history)} "
                      f"epochs, {steps} steps in {seconds:.0f} s (best epoch {result.best.epoch}){cut}",
                      {"valid_dice": scores["valid"], "test_dice": scores["test"], "target": target,
                       "met": None if target is None else scores["test"] >= target, "train_seconds": seconds,
                       "epochs": len(result.history), "steps": steps, "best_epoch": result.best.epoch,
                       "config": config.to_dict()})


def check_speed(context: CheckContext, compiled: bool) -> Iterator[StageResult]:
    """Each model's training (model-only and end to end) and inference speed, against the targets."""
    for model in context.models(compiled):
        row = speed_of(context.speed_case(model, compiled))
        target = SPEED_TARGETS["train_images_per_second"][model]
        comparison = "" if context.smoke else (
            f"; target {target} img/s {'met' if row['train_model_only'] >= target else 'missed'}, end to end "
            f"{'within' if row['end_to_end_share'] >= SPEED_TARGETS['end_to_end_share'] else 'below'} "
            f"{SPEED_TARGETS['end_to_end_share']:.0%} of model-only")
        yield StageResult(f"speed-{'compiled' if compiled else 'eager'}: {model}", "measured",
                          f"{model} {precision_label(row)} {'compiled' if compiled else 'eager'}: train "
                          f"{row['train_model_only']:.1f} img/s model-only, {row['train_end_to_end']:.1f} end to end "
                          f"({row['end_to_end_share']:.0%}); inference "
                          f"{'not timed' if row['inference'] is None else format(row['inference'], '.1f') + ' img/s'}"
                          f"{comparison}", row)
