"""`python -m labkit` (or `labkit`): the terminal face of the same engine the notebooks use.

Every subcommand is registered here, in COMMANDS, from a function that takes plain keyword
arguments: the flags become the same objects a notebook builds (a `TrainConfig`, a checkpoint
path), so there is no second code path to drift. Choices come from the registries (models,
profiles, border modes, precisions, splits) and a flag left out leaves the function's own default.
Bad input ends with one line on stderr and a non-zero exit; `--debug` (anywhere on the line)
shows the traceback instead, and an unexpected error always shows it.

The command line is the front door above labkit's rooms: it imports the student's core, the
course (release, grade) and the maintainer's bench; none of them imports it.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labkit import allocator, paths
from labkit.bench import gpu_check, library, quality, rehearsal, speed
from labkit.checkpoint import CheckpointError
from labkit.config import PROFILES
from labkit.data import BORDER_MODES, SPLITS
from labkit.device import PRECISIONS
from labkit.distributed import rank_label
from labkit.errors import one_line
from labkit.files import DISK_ERRORS, WriteError
from labkit.models import MODELS
from labkit.run_folder import RunFolderBusy

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
PROFILE_CHOICES = ["auto", *PROFILES]
MODEL_NAMES = list(MODELS)
# Errors a user can cause and fix (a setting, a path, a file; a full or read-only disk, see
# is_user_error): one line, no traceback. A diverged run and a damaged cache are ValueErrors.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, CheckpointError,
               RunFolderBusy)
# What argparse puts beside a command's own arguments: which command, and how to report it.
PARSER_KEYS = ("run", "command_name", "command", "subcommand", "debug")


def given(**values) -> dict:
    """The values the user gave (not None), so a left-out flag keeps the called function's default."""
    return {name: value for name, value in values.items() if value is not None}


# ---------------------------------------------------------------- what each subcommand does


def download_dataset(*, root: str | None, base_url: str | None) -> None:
    from labkit.download import download

    print(f"dataset ready at {download(root, base_url=base_url)}")


def write_synthetic_set(*, like_full: bool, root: str | None, n: int | None, size: int | None, seed: int | None,
                        workers: int) -> None:
    from labkit.bench.like_full import like_full_shape
    from labkit.data import synthetic_root
    from labkit.synthetic import write_synthetic
    from labkit.synthetic_shape import small_shape

    if like_full:
        shape, root = like_full_shape(**given(n=n, size=size)), root or paths.data_dir() / "synthetic-like-full"
    else:
        shape, root = small_shape(**given(n=n, size=size)), root or synthetic_root()
    started = time.perf_counter()
    root = write_synthetic(root, shape, workers=workers, progress=True, **given(seed=seed))
    counts = shape.split_counts()
    print(f"synthetic dataset written to {root}: {len(shape.breeds)} breeds, {counts['trainval']} trainval and "
          f"{counts['test']} test photos in {time.perf_counter() - started:.1f} s")


def train_model(*, model: str, profile: str, resume: bool, deep_supervision: bool | None, **overrides) -> int:
    """`fit` the configuration the flags describe; `overrides` are TrainConfig fields (None: the profile's)."""
    from labkit.config import make_config
    from labkit.train import fit

    if deep_supervision:  # a model argument, not a TrainConfig field
        overrides["model_kwargs"] = {"deep_supervision": True}
    config = make_config(model, profile, **given(**overrides))
    result = fit(config, resume=resume)
    if not result.world.is_main:  # under torchrun rank 0 alone reports
        return EXIT_INTERRUPTED if result.interrupted else 0
    if result.best:
        print(f"best valid Dice {result.best.valid_dice:.4f} at epoch {result.best.epoch}: {result.best_checkpoint}")
    print(f"last checkpoint: {result.last_checkpoint}\nhistory: {result.run_dir / 'history.csv'}")
    return EXIT_INTERRUPTED if result.interrupted else 0


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    columns = ["dice", "iou", "dice_dataset", "iou_dataset", "pixel_accuracy"]
    lines = [f"{'':10}" + "".join(f"{name:>16}" for name in columns)]
    for resolution, values in metrics.items():
        lines.append(f"{resolution:10}" + "".join(f"{values[name]:16.4f}" for name in columns))
    return "\n".join(lines)


def evaluate_checkpoint(*, checkpoint: str, split: str, root: str | None, tta: bool, batch_size: int | None,
                        device: str | None, output: str | None) -> None:
    from labkit.evaluate import evaluate

    result = evaluate(checkpoint, split=split, tta=tta, **given(root=root, batch_size=batch_size, device=device))
    print(f"{result.info['images']} {split} photos, mean over photos (dice, iou) and over all pixels (*_dataset)")
    print(metrics_table(result.metrics))
    run = Path(checkpoint).resolve().parent.name
    output = Path(output or paths.reports_dir() / "evaluation" / f"{run}_{split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"info": result.info, "metrics": result.metrics, "per_image": result.per_image}, indent=1))
    print(f"written: {output}")


def predict_photos(*, inputs: list[str], checkpoint: str, output: str | None, threshold: float | None, tta: bool,
                   device: str | None) -> int:
    from labkit.predict import predict_files

    output = Path(output or paths.reports_dir() / "predictions")
    report = predict_files(checkpoint, inputs, output, tta=tta, **given(threshold=threshold, device=device))
    for path, reason in report.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{len(report.written)} masks, overlays and cutouts written to {output}")
    return 0 if report.written else EXIT_ERROR


def run_workbook(*, profile: str, timeout: int | None, in_place: bool) -> None:
    from labkit.workbook import run_notebooks

    run_notebooks(profile=profile, in_place=in_place, **given(timeout=timeout))


def show_caches(*, clear: bool) -> None:
    from labkit.data.cache import cache_sizes, clear_cache, format_size

    folder = paths.cache_dir()
    if clear:
        removed, freed = clear_cache(folder)
        print(f"removed {removed} cache files ({format_size(freed)}) from {folder}")
        return
    sizes = cache_sizes(folder)
    for name, size in sizes.items():
        print(f"{format_size(size):>10}  {name}")
    print(f"{format_size(sum(sizes.values()))} in {len(sizes)} caches in {folder}")


def release_notebooks(*, output: str, masters: str | None) -> None:
    from labkit.course.masters import default_masters
    from labkit.course.release import release

    written = release(masters or default_masters(), output)
    print(f"{len(written)} student notebooks written to {output}")


def grade_class(*, submissions: str, masters: str | None, output: str | None, jobs: int | None, regrade: bool,
                timeout: int, checks_only: bool) -> None:
    from labkit.course import grade
    from labkit.course.masters import default_masters

    results = grade.grade_class(submissions, masters or default_masters(), output=output, jobs=jobs, regrade=regrade,
                                timeout=timeout, checks_only=checks_only)
    if len(results) == 1:
        print(grade.format_result(results[0]))
    print(f"gradebook: {Path(output or Path(submissions) / grade.OUTPUT_FOLDER) / 'gradebook.csv'}")


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Option:
    """One flag or positional argument: what `argparse.ArgumentParser.add_argument` takes."""

    flags: tuple[str, ...]
    settings: dict


def option(*flags: str, **settings) -> Option:
    return Option(flags, settings)


@dataclass(frozen=True)
class Command:
    """A subcommand: the function it runs with its options as keyword arguments, or a group of
    subcommands (`bench speed`, `bench quality`, ...)."""

    name: str
    help: str
    run: Callable[..., int | None] | None = None
    options: tuple[Option, ...] = ()
    commands: tuple["Command", ...] = field(default=())


DEVICE = option("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")

TRAIN_OPTIONS = (
    option("--model", choices=MODEL_NAMES, default="unet"),
    option("--profile", choices=PROFILE_CHOICES, default="auto", help="auto: gpu if CUDA, else cpu"),
    option("--data-path", dest="data_root", help="dataset root (default: $LABKIT_DATA, data/oxford-iiit-pet, else synthetic)"),
    option("--epochs", type=int, help="train this many epochs (replaces the profile's budget)"),
    option("--train-steps", type=int,
           help="train this many optimiser steps (replaces the profile's budget; the cpu profile's is steps)"),
    option("--batch-size", type=int),
    option("--lr", type=float, help="peak learning rate"),
    option("--weight-decay", type=float),
    option("--image-size", type=int),
    option("--augment-strength", type=float, help="0 turns augmentation off"),
    option("--border", choices=BORDER_MODES, help="how trimap border pixels count"),
    option("--pretrained", help="'imagenet' or a resnet34 state_dict path (resnet34_unet only)"),
    option("--deep-supervision", action="store_true", default=None,
           help="also train on logits from the coarser decoder levels"),
    option("--device", help="auto | cpu | cuda | cuda:1 | mps"),
    option("--precision", choices=PRECISIONS, help="auto: bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 elsewhere"),
    option("--compile", action="store_true", default=None, help="use torch.compile"),
    option("--seed", type=int),
    option("--output", dest="output_dir", help="folder for run folders (default: checkpoints/)"),
    option("--run-name", help="run folder name (default: the model name)"),
    option("--resume", action="store_true", help="continue from <run>/last.pt"),
)

BENCH = (
    Command("speed", "training and inference images/second", speed.run_speed, (
        option("--models", nargs="+", default=MODEL_NAMES, choices=MODEL_NAMES),
        option("--profile", default="auto", help="model widths from this profile (gpu = full size)"),
        option("--image-size", type=int, default=256),
        option("--batch-size", type=int, default=32),
        option("--steps", type=int, default=10, help="timed steps per measurement"),
        option("--precisions", nargs="+", default=None, choices=PRECISIONS,
               help="fp32 bf16 fp16 auto (default: fp32, plus auto on CUDA)"),
        option("--compile", dest="compiled", action="store_true", help="also measure torch.compile"),
        DEVICE,
    )),
    Command("library", "labkit's ResNet34-UNet beside segmentation_models_pytorch's, timed in turn",
            library.run_library, (
        option("--profile", default="auto", help="decoder widths from this profile (gpu = full size)"),
        option("--image-size", type=int, default=256),
        option("--batch-size", type=int, default=8),
        option("--steps", type=int, default=3, help="timed steps per round"),
        option("--rounds", type=int, default=5, help="rounds, each timing both models; the median is reported"),
        DEVICE,
    )),
    Command("quality", "train both models, report valid/test Dice and time", quality.run_quality, (
        option("--data-path", dest="data_root"),
        option("--profile", default="auto"),
        option("--models", nargs="+", default=MODEL_NAMES, choices=MODEL_NAMES),
        option("--epochs", type=int),
        option("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
               help="override a TrainConfig field, e.g. --set augment_strength=0.5 "
                    "--set model_kwargs='{\"base_width\": 32}' (values are read as JSON, else as text)"),
        option("--seeds", nargs="+", type=int, default=[0], help="train once per seed; rows and a mean per model"),
        option("--folds", type=int, help="cross-validate: each of this many folds of trainval held out in turn; "
                                        "valid only, test untouched"),
        DEVICE,
    )),
    Command("gpu-check", "prove the GPU path in minutes: sync-free training, quality, resume, torchrun, speed",
            gpu_check.run_gpu_check, (
                option("--data-path", dest="data_root",
                       help="dataset (default: the real sample wherever the tree has it, else the synthetic set)"),
                option("--smoke", action="store_true", help="toy sizes, no targets: proves the code paths on a CPU"),
                option("--plan", dest="plan_only", action="store_true",
                       help="print the stages, their time budgets and the estimate, and stop"),
                option("--stages", nargs="+", choices=list(gpu_check.STAGES), help="run only these stages"),
                DEVICE,
            )),
    Command("rehearsal", "cache build time, training memory and time, evaluation time on a full-size "
                         "(or like-full synthetic) dataset", rehearsal.run_rehearsal, (
        option("--data-path", dest="data_root",
               help="dataset root, e.g. one written by `python -m labkit synthetic --like-full`"),
        option("--image-sizes", nargs="+", type=int, default=[128, 256], help="sizes to cache and train at"),
        option("--profile", default="auto", help="the recipe trained (auto: gpu if CUDA, else cpu)"),
        option("--model", default="unet", choices=MODEL_NAMES),
        option("--epochs", type=int, help="epochs per training run (default: the profile's budget)"),
        option("--train-steps", type=int, help="optimiser steps per training run, instead of epochs"),
        option("--evaluate", action=argparse.BooleanOptionalAction, default=True,
               help="evaluate the test split at original resolution (default: yes)"),
        option("--checkpoint", help="evaluate this checkpoint (default: the run trained at the first image size)"),
        DEVICE,
    )),
)

COMMANDS = (
    Command("download", "fetch the Oxford-IIIT Pet dataset (~800 MB) with checksums", download_dataset, (
        option("--data-path", dest="root", help="where to put it (default: data/oxford-iiit-pet)"),
        option("--url", dest="base_url", help="mirror folder holding images.tar.gz and annotations.tar.gz"),
    )),
    Command("synthetic", "write the synthetic dataset (official layout)", write_synthetic_set, (
        option("--like-full", action="store_true",
               help="shaped like the real dataset: 37 breeds, 3,680 trainval + 3,669 test photos, real photo sizes"),
        option("--output", dest="root", help="folder (default: data/synthetic, with --like-full data/synthetic-like-full)"),
        option("--count", dest="n", type=int, help="number of photos (default 240, with --like-full 7,349)"),
        option("--size", type=int, help="approximate photo size in pixels (default 160, with --like-full: like the real photos)"),
        option("--seed", type=int),
        option("--workers", type=int, default=os.cpu_count() or 1,
               help="processes drawing photos (default: one per CPU core); the files do not depend on it"),
    )),
    Command("train", "train a model; checkpoints land in checkpoints/<run-name>/", train_model, TRAIN_OPTIONS),
    Command("evaluate", "score a checkpoint on a split; prints a table, writes JSON", evaluate_checkpoint, (
        option("--checkpoint", required=True),
        option("--split", default="test", choices=SPLITS),
        option("--data-path", dest="root", help="default: the dataset the checkpoint was trained on"),
        option("--tta", action="store_true", help="average with the flipped prediction"),
        option("--batch-size", type=int),
        option("--device"),
        option("--output", help="JSON file (default: reports/evaluation/<run>_<split>.json)"),
    )),
    Command("predict", "masks, overlays and cutouts for your own photos", predict_photos, (
        option("inputs", nargs="+", help="image files or folders"),
        option("--checkpoint", required=True),
        option("--output", default=None, help="folder (default: reports/predictions/)"),
        option("--threshold", type=float, help="a pixel is pet above this probability (default 0.5)"),
        option("--tta", action="store_true"),
        option("--device"),
    )),
    Command("workbook", "execute notebooks 00-06 into reports/notebooks/", run_workbook, (
        option("--profile", choices=PROFILE_CHOICES, default="auto"),
        option("--timeout", type=int, help="seconds allowed per cell (default 3600)"),
        option("--in-place", action="store_true", help="store outputs in notebooks/ (maintainers)"),
    )),
    Command("cache", "list the decoded-image caches and their size; --clear deletes them", show_caches, (
        option("--clear", action="store_true", help="delete every cache (rebuilt on next use)"),
    )),
    Command("release", "write the student notebooks: answers stubbed, hidden checks removed", release_notebooks, (
        option("--output", required=True, help="folder for the student notebooks"),
        option("--masters", help="folder of master notebooks (default: notebooks/)"),
    )),
    Command("grade", "grade a student's notebooks, or a folder of students' folders", grade_class, (
        option("submissions", help="a student's folder of notebooks, or a folder holding one folder per student"),
        option("--masters", help="folder of master notebooks (default: notebooks/)"),
        option("--output", help="folder for the gradebook, results and feedback (default: SUBMISSIONS/graded)"),
        option("--jobs", type=int, help="students graded at once (default: the number of CPU cores)"),
        option("--regrade", action="store_true", help="grade again students whose result is up to date"),
        option("--timeout", type=int, default=600, help="seconds each notebook may run (default 600)"),
        option("--checks-only", action="store_true",
               help="judge the checks without running the notebooks (faster; no executed feedback copies)"),
    )),
    Command("bench", "speed and quality benchmarks, the GPU check, the full-size rehearsal (JSON under reports/bench/)",
            commands=BENCH),
)

DEBUG_HELP = "show the full traceback of any error"


def add_commands(parser: argparse.ArgumentParser, commands: tuple[Command, ...], dest: str,
                 path: tuple[str, ...] = ()) -> None:
    """Every command as a subparser of `parser`, each with `--debug`, so it may stand anywhere on the line."""
    subparsers = parser.add_subparsers(dest=dest, required=True)
    for command in commands:
        child = subparsers.add_parser(command.name, help=command.help)
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        for argument in command.options:
            child.add_argument(*argument.flags, **argument.settings)
        if command.commands:
            add_commands(child, command.commands, "subcommand", (*path, command.name))
        else:
            child.set_defaults(run=command.run, command_name=" ".join((*path, command.name)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    add_commands(parser, COMMANDS, "command")
    return parser


def explain(error: BaseException) -> str:
    """One line for an error a user can fix, with the fix where the error alone does not say it."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return ("the GPU ran out of memory; try a smaller --batch-size (halve it until it fits), a smaller "
                "--image-size, or --precision bf16/fp16")
    if isinstance(error, OSError) and error.errno in DISK_ERRORS and not isinstance(error, WriteError):
        where = f" writing {error.filename}" if error.filename else ""
        return (f"{DISK_ERRORS[error.errno]}{where}; free some space (`python -m labkit cache --clear` frees the "
                "decoded-image caches) or choose another folder (--output, LABKIT_CACHE, LABKIT_HOME)")
    return one_line(error)


def is_user_error(error: BaseException) -> bool:
    return (isinstance(error, USER_ERRORS + (torch.cuda.OutOfMemoryError,))
            or (isinstance(error, OSError) and error.errno in DISK_ERRORS))


def main(argv: list[str] | None = None) -> int:
    arguments = vars(build_parser().parse_args(argv))
    run, name, debug = arguments["run"], arguments["command_name"], arguments["debug"]
    allocator.reuse_freed_memory()  # before any tensor: activations reuse freed memory (labkit/allocator.py)
    try:
        return run(**{key: value for key, value in arguments.items() if key not in PARSER_KEYS}) or 0
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug or not is_user_error(error):
            raise
        print(f"labkit {name}{rank_label()}: error: {explain(error)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_ERROR
