"""`python -m labkit` (or `labkit`): the terminal face of the same engine the notebooks use.

Every subcommand turns its flags into the same objects a notebook builds (a `TrainConfig`, a
checkpoint path), so there is no second code path to drift. Choices come from the registries
(models, profiles, border modes, precisions, splits) and a flag left out leaves the function's
own default. Bad input ends with one line on stderr and a non-zero exit; `--debug` shows the
traceback instead, and an unexpected error always shows it.
"""

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

import torch

from labkit import allocator, paths
from labkit.bench import add_bench_parser, run_bench
from labkit.checkpoint import CheckpointError
from labkit.config import PROFILES
from labkit.data import BORDER_MODES, SPLITS
from labkit.data.cache import add_cache_parser, run_cache
from labkit.device import PRECISIONS
from labkit.distributed import rank_label
from labkit.errors import one_line
from labkit.lab import add_lab_parsers, run_grade, run_release
from labkit.models import MODELS
from labkit.run_folder import RunFolderBusy

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
PROFILE_CHOICES = ["auto", *PROFILES]
# Errors a user can cause and fix (a setting, a path, a file, a full disk): one line, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, CheckpointError,
               RunFolderBusy)


def given(args: argparse.Namespace, *names: str) -> dict:
    """The flags among `names` that the user gave, so a left-out flag keeps the function's default."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_train_parser(commands) -> None:
    parser = commands.add_parser("train", help="train a model; checkpoints land in checkpoints/<run-name>/")
    parser.add_argument("--model", choices=list(MODELS), default="unet")
    parser.add_argument("--profile", choices=PROFILE_CHOICES, default="auto", help="auto: gpu if CUDA, else cpu")
    parser.add_argument("--data-path", dest="data_root", help="dataset root (default: $LABKIT_DATA, data/oxford-iiit-pet, else synthetic)")
    parser.add_argument("--epochs", type=int, help="train this many epochs (replaces the profile's budget)")
    parser.add_argument("--train-steps", type=int,
                        help="train this many optimiser steps (replaces the profile's budget; the cpu profile's is steps)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--augment-strength", type=float, help="0 turns augmentation off")
    parser.add_argument("--border", choices=BORDER_MODES, help="how trimap border pixels count")
    parser.add_argument("--pretrained", help="'imagenet' or a resnet34 state_dict path (resnet34_unet only)")
    parser.add_argument("--deep-supervision", action="store_true", default=None,
                        help="also train on logits from the coarser decoder levels")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:1 | mps")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto: bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 elsewhere")
    parser.add_argument("--compile", action="store_true", default=None, help="use torch.compile")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output", dest="output_dir", help="folder for run folders (default: checkpoints/)")
    parser.add_argument("--run-name", help="run folder name (default: the model name)")
    parser.add_argument("--resume", action="store_true", help="continue from <run>/last.pt")


def add_evaluate_parser(commands) -> None:
    parser = commands.add_parser("evaluate", help="score a checkpoint on a split; prints a table, writes JSON")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--data-path", dest="root", help="default: the dataset the checkpoint was trained on")
    parser.add_argument("--tta", action="store_true", help="average with the flipped prediction")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device")
    parser.add_argument("--output", help="JSON file (default: reports/evaluation/<run>_<split>.json)")


def add_predict_parser(commands) -> None:
    parser = commands.add_parser("predict", help="masks, overlays and cutouts for your own photos")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", default=None, help="folder (default: reports/predictions/)")
    parser.add_argument("--threshold", type=float, help="a pixel is pet above this probability (default 0.5)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="fetch the Oxford-IIIT Pet dataset (~800 MB) with checksums")
    download.add_argument("--data-path", dest="root", help="where to put it (default: data/oxford-iiit-pet)")
    download.add_argument("--url", dest="base_url", help="mirror folder holding images.tar.gz and annotations.tar.gz")

    synthetic = commands.add_parser("synthetic", help="write the synthetic dataset (official layout)")
    synthetic.add_argument("--like-full", action="store_true",
                           help="shaped like the real dataset: 37 breeds, 3,680 trainval + 3,669 test photos, real photo sizes")
    synthetic.add_argument("--output", dest="root", help="folder (default: data/synthetic, with --like-full data/synthetic-like-full)")
    synthetic.add_argument("--count", dest="n", type=int, help="number of photos (default 240, with --like-full 7,349)")
    synthetic.add_argument("--size", type=int, help="approximate photo size in pixels (default 160, with --like-full: like the real photos)")
    synthetic.add_argument("--seed", type=int)
    synthetic.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                           help="processes drawing photos (default: one per CPU core); the files do not depend on it")

    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_predict_parser(commands)

    workbook = commands.add_parser("workbook", help="execute notebooks 00-06 into reports/notebooks/")
    workbook.add_argument("--profile", choices=PROFILE_CHOICES, default="auto")
    workbook.add_argument("--timeout", type=int, help="seconds allowed per cell (default 3600)")
    workbook.add_argument("--in-place", action="store_true", help="store outputs in notebooks/ (maintainers)")

    add_bench_parser(commands)
    add_cache_parser(commands)
    add_lab_parsers(commands)
    add_debug_flag(parser)
    return parser


def add_debug_flag(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """`--debug` on every (sub)command, so it may stand anywhere on the line."""
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show the full traceback of any error")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                add_debug_flag(subparser, top=False)


def run_download(args) -> None:
    from labkit.download import download

    root = download(args.root, base_url=args.base_url)
    print(f"dataset ready at {root}")


def run_synthetic(args) -> None:
    from labkit.data import synthetic_root
    from labkit.synthetic import write_synthetic
    from labkit.synthetic_shape import like_full_shape, small_shape

    if args.like_full:
        shape, root = like_full_shape(**given(args, "n", "size")), args.root or paths.data_dir() / "synthetic-like-full"
    else:
        shape, root = small_shape(**given(args, "n", "size")), args.root or synthetic_root()
    started = time.perf_counter()
    root = write_synthetic(root, shape, workers=args.workers, progress=True, **given(args, "seed"))
    counts = shape.split_counts()
    print(f"synthetic dataset written to {root}: {len(shape.breeds)} breeds, {counts['trainval']} trainval and "
          f"{counts['test']} test photos in {time.perf_counter() - started:.1f} s")


def run_train(args) -> int:
    from labkit.config import make_config
    from labkit.train import fit

    overrides = {key: value for key, value in vars(args).items()
                 if value is not None and key not in {"command", "model", "profile", "resume", "debug"}}
    if overrides.pop("deep_supervision", False):  # a model argument, not a TrainConfig field
        overrides["model_kwargs"] = {"deep_supervision": True}
    config = make_config(args.model, args.profile, **overrides)
    result = fit(config, resume=args.resume)
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


def run_evaluate(args) -> None:
    from labkit.evaluate import evaluate

    result = evaluate(args.checkpoint, split=args.split, tta=args.tta, **given(args, "root", "batch_size", "device"))
    print(f"{result.info['images']} {args.split} photos, mean over photos (dice, iou) and over all pixels (*_dataset)")
    print(metrics_table(result.metrics))
    run = Path(args.checkpoint).resolve().parent.name
    output = Path(args.output or paths.reports_dir() / "evaluation" / f"{run}_{args.split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"info": result.info, "metrics": result.metrics, "per_image": result.per_image}, indent=1))
    print(f"written: {output}")


def run_predict(args) -> int:
    from labkit.predict import predict_files

    output = Path(args.output or paths.reports_dir() / "predictions")
    report = predict_files(args.checkpoint, args.inputs, output, tta=args.tta, **given(args, "threshold", "device"))
    for path, reason in report.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{len(report.written)} masks, overlays and cutouts written to {output}")
    return 0 if report.written else EXIT_ERROR


def run_workbook(args) -> None:
    from labkit.workbook import run_notebooks

    run_notebooks(profile=args.profile, in_place=args.in_place, **given(args, "timeout"))


def explain(error: BaseException) -> str:
    """One line for an error a user can fix, with the fix where the error alone does not say it."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return ("the GPU ran out of memory; try a smaller --batch-size (halve it until it fits), a smaller "
                "--image-size, or --precision bf16/fp16")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the disk{where}; free some space (`python -m labkit cache --clear` frees the decoded-image caches)"
    return one_line(error)


def is_user_error(error: BaseException) -> bool:
    return (isinstance(error, USER_ERRORS + (torch.cuda.OutOfMemoryError,))
            or (isinstance(error, OSError) and error.errno == errno.ENOSPC))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    allocator.reuse_freed_memory()  # before any tensor: activations reuse freed memory (labkit/allocator.py)
    handlers = {"download": run_download, "synthetic": run_synthetic, "train": run_train,
                "evaluate": run_evaluate, "predict": run_predict, "workbook": run_workbook, "bench": run_bench,
                "cache": run_cache, "release": run_release, "grade": run_grade}
    try:
        return handlers[args.command](args) or 0
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug or not is_user_error(error):
            raise
        print(f"labkit {args.command}{rank_label()}: error: {explain(error)} (--debug shows the traceback)",
              file=sys.stderr)
        return EXIT_ERROR
