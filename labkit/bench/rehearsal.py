"""`python -m labkit bench rehearsal`: what the full dataset will cost, measured before the real run.

Pointed at a set shaped like Oxford-IIIT Pet (`python -m labkit synthetic --like-full`) or at the
real photos, it measures, prints as it goes and rewrites `reports/bench/rehearsal_*.json` after
each measurement:

- cache: seconds to decode each split (train, valid, test) at each image size into a fresh cache
  folder (deleted at the end), and the size of each cache on disk;
- training: seconds per epoch and peak resident memory (RSS) of a short training run at each
  image size, each in a fresh process so that one size's peak does not hide another's;
- evaluation: seconds to score the whole test split at original resolution, without and with
  flip TTA (each loading the split's cache, as `evaluate` does), and the peak memory of that
  process, for the model trained at the first image size or a given checkpoint.

A bare child process (Python, torch and this module's imports, nothing done) is measured too:
the part of every peak that no setting changes. The first epoch of a run includes one-time
warm-up; train more than one (`--epochs`) to see it apart.
"""

import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit import allocator, data, paths
from labkit.bench.reports import machine, marked_for_malloc, safe_file_name, save_report
from labkit.config import TrainConfig, make_config, resolve_profile
from labkit.data.cache import cache_prefix, format_size
from labkit.device import resolve_device
from labkit.history import EpochRecord

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Measured:
    """What a child process returned, how long it took and its peak resident memory."""

    value: object
    seconds: float
    peak_rss_bytes: int
    peak_rss_source: str  # "VmHWM" (Linux) or "ru_maxrss" (an upper bound elsewhere)


@dataclass(frozen=True)
class TrainedRun:
    """A training run a child made: its epochs, its best checkpoint and its plan of steps."""

    history: list[EpochRecord]
    checkpoint: str
    epoch_plan: list[int]
    steps_per_epoch: int


def peak_rss() -> tuple[int, str]:
    """This process's peak resident memory in bytes, and where it was read.

    /proc's VmHWM first: on Linux a process's `ru_maxrss` is at least the peak of the process that
    started it (the kernel carries the figure across exec), so every child would report the
    parent's peak. Elsewhere `ru_maxrss` is all there is, and is an upper bound.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "VmHWM"  # kB
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "ru_maxrss"  # bytes on macOS, KiB elsewhere


def measured(function: Callable, kwargs: dict) -> Measured:
    """Run in the child: the function's value, its seconds and the process's peak memory."""
    started = time.perf_counter()
    value = function(**kwargs)
    seconds = time.perf_counter() - started
    return Measured(value, seconds, *peak_rss())


def in_child(function: Callable, **kwargs) -> Measured:
    """`function(**kwargs)` in a fresh Python process (spawned, so it inherits no memory), measured.
    The child starts with labkit's memory reuse, as `python -m labkit train` runs."""
    with allocator.children_start_with_reuse(), multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measured, (function, kwargs))


def bare_child() -> None:
    """Nothing: what a child holds before it works (Python, torch and this module's imports)."""


def train_child(config: TrainConfig, cache_dir: str) -> TrainedRun:
    """Train `config` reading the rehearsal's caches; the epochs' records and the best checkpoint."""
    os.environ["LABKIT_CACHE"] = cache_dir
    from labkit.checkpoint import load_checkpoint
    from labkit.train import epoch_plan, fit, steps_per_epoch

    result = fit(config)
    if result.interrupted:
        raise KeyboardInterrupt
    train_images = load_checkpoint(result.best_checkpoint)["data"]["train_images"]
    return TrainedRun(result.history, str(result.best_checkpoint), epoch_plan(config, train_images),
                      steps_per_epoch(config.batch_size, train_images))


def evaluate_child(checkpoint: str, root: str, cache_dir: str, device: str) -> list[dict]:
    """Score the test split at original resolution without and with flip TTA, timing each."""
    os.environ["LABKIT_CACHE"] = cache_dir
    from labkit.evaluate import evaluate

    runs = []
    for tta in (False, True):
        started = time.perf_counter()
        result = evaluate(checkpoint, split="test", root=root, tta=tta, device=device)
        runs.append({"tta": tta, "seconds": time.perf_counter() - started, "photos": result.info["images"],
                     "image_size": result.info["image_size"], "dice_original": result.metrics["original"]["dice"],
                     "dice": result.metrics["resized"]["dice"]})
    return runs


def build_cache(root: Path, split: str, size: int, cache_dir: Path) -> dict:
    """Decode one split into the (empty) rehearsal cache folder; seconds, photos and bytes on disk."""
    started = time.perf_counter()
    photos = len(data.load_split(root, split, size=size, cache_dir=cache_dir))
    seconds = time.perf_counter() - started
    size_on_disk = sum(path.stat().st_size for path in cache_dir.glob(cache_prefix(root, split, size) + "*"))
    row = {"image_size": size, "split": split, "photos": photos, "seconds": seconds, "bytes": size_on_disk}
    print(f"cache {size} px {split:5}: {photos} photos decoded in {seconds:.1f} s ({photos / seconds:.1f} photos/s), "
          f"{format_size(size_on_disk)} on disk", flush=True)
    return row


def train_row(config: TrainConfig, cache_dir: Path, bare: Measured) -> dict:
    """One training run in its own process, summarised as a report row."""
    run = in_child(train_child, config=config, cache_dir=str(cache_dir))
    trained: TrainedRun = run.value
    history, steps = trained.history, sum(trained.epoch_plan)
    seconds_per_step = sum(record.epoch_seconds for record in history) / steps
    epoch_seconds = seconds_per_step * trained.steps_per_epoch  # estimated from the steps taken when no epoch was whole
    images_per_second = sum(record.train_images_per_second for record in history) / len(history)
    row = {"image_size": config.image_size, "epochs": len(history), "steps": steps,
           "seconds_per_step": seconds_per_step, "seconds_per_epoch": epoch_seconds,
           "steps_per_epoch": trained.steps_per_epoch, "valid_dice": [record.valid_dice for record in history],
           "epoch_seconds": [record.epoch_seconds for record in history],
           "train_images_per_second": images_per_second, "seconds": run.seconds,
           "peak_rss_bytes": run.peak_rss_bytes, "checkpoint": trained.checkpoint}
    print(f"train {config.image_size} px: {config.model}, {steps} steps ({seconds_per_step:.2f} s each; a whole "
          f"epoch of {trained.steps_per_epoch} steps {epoch_seconds:.0f} s), best valid Dice "
          f"{max(record.valid_dice for record in history):.4f}; "
          f"({images_per_second:.1f} images/s; {run.seconds:.1f} s with loading and validation), peak RSS "
          f"{format_size(run.peak_rss_bytes)} (a bare process: {format_size(bare.peak_rss_bytes)})", flush=True)
    return row


def evaluation_row(checkpoint: str, root: Path, cache_dir: Path, device: str) -> dict:
    """Both evaluations in one process, summarised."""
    run = in_child(evaluate_child, checkpoint=checkpoint, root=str(root), cache_dir=str(cache_dir), device=device)
    for result in run.value:
        print(f"evaluate test at original resolution{' with flip TTA' if result['tta'] else ''}: "
              f"{result['photos']} photos in {result['seconds']:.1f} s ({result['photos'] / result['seconds']:.1f} "
              f"photos/s), Dice {result['dice_original']:.4f}", flush=True)
    print(f"evaluate: peak RSS {format_size(run.peak_rss_bytes)}", flush=True)
    return {"checkpoint": checkpoint, "runs": run.value, "peak_rss_bytes": run.peak_rss_bytes}


def run_rehearsal(*, data_root: str | None, image_sizes: list[int], profile: str, model: str, epochs: int | None,
                  train_steps: int | None, evaluate: bool, checkpoint: str | None, device: str) -> None:
    """Cache, train and evaluate as described in the module docstring, saving after each step.

    Args:
        image_sizes: sizes to cache and train at.
        epochs, train_steps: the budget of each training run (default: the profile's).
        evaluate: also score the test split at original resolution, without and with flip TTA.
        checkpoint: the model to evaluate (default: the run trained at the first image size).
    """
    if sys.platform == "win32":
        raise ValueError("bench rehearsal reads peak memory from /proc or the resource module, which Windows "
                         "lacks; run it on Linux or macOS")
    if checkpoint and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint} does not exist; give a labkit checkpoint (best.pt) "
                                "or leave it out to evaluate the run trained at the first image size")
    profile, measured_on = resolve_profile(profile), resolve_device(device)
    root = data.resolve_root(data_root)
    configs = [make_config(model, profile, data_root=str(root), image_size=size, epochs=epochs,
                           train_steps=train_steps, device=device,
                           output_dir=str(paths.checkpoints_dir() / "rehearsal"), run_name=f"{model}-{profile}-{size}px")
               for size in image_sizes]  # every setting is checked before anything is measured
    name = safe_file_name(marked_for_malloc(f"rehearsal_{root.name}_{profile}_{model}_{'-'.join(map(str, image_sizes))}px"))
    report = {"machine": {**machine(measured_on), "cpus": os.cpu_count()}, "data_root": str(root),
              "synthetic": data.is_synthetic(root), "profile": profile, "model": model, "epochs": configs[0].epochs,
              "train_steps": configs[0].train_steps,
              "image_sizes": image_sizes, "cache": [], "training": [], "evaluation": None}
    print(f"rehearsal on {root}: {profile} profile, {model}, image sizes {image_sizes} px", flush=True)
    bare = in_child(bare_child)
    report["bare_process"] = {"peak_rss_bytes": bare.peak_rss_bytes, "peak_rss_source": bare.peak_rss_source}
    print(f"a bare child process: peak RSS {format_size(bare.peak_rss_bytes)} ({bare.peak_rss_source})", flush=True)
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    cache_dir = Path(tempfile.mkdtemp(prefix="rehearsal-", dir=paths.cache_dir()))
    try:
        for size in image_sizes:
            for split in SPLITS:
                report["cache"].append(build_cache(root, split, size, cache_dir))
                save_report(name, report, measured_on)
        for config in configs:
            report["training"].append(train_row(config, cache_dir, bare))
            save_report(name, report, measured_on)
        if evaluate:
            report["evaluation"] = evaluation_row(checkpoint or report["training"][0]["checkpoint"], root, cache_dir,
                                                  device)
            save_report(name, report, measured_on)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
