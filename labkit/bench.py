"""`python -m labkit bench speed|quality|gpu-check|rehearsal`: measure, print and save; never quote a number not measured.

speed:   images per second for training steps and inference, model-only (random tensors already
         on the device) and end to end (uint8 photos on the device -> augmentation -> normalise ->
         forward, backward, optimiser: the exact `train_one_epoch` the trainer runs).
quality: train both models with a profile (plus any `--set` overrides, once per `--seeds` seed),
         then score valid and test (mean per-image Dice at the training size and at original
         resolution, with and without flip TTA) and the wall time. Choose settings on valid.
gpu-check: the GPU path proven in minutes (see `labkit.gpu_check`).
rehearsal: cache build time, training memory and time, and evaluation time on a full-size dataset
         (see `labkit.rehearsal`).
"""

import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from labkit import allocator, paths
from labkit.config import TrainConfig, make_config, resolve_profile
from labkit.device import DTYPES, PRECISIONS, autocast, resolve_device, resolve_precision
from labkit.models import MODELS, count_parameters

MODEL_NAMES = tuple(MODELS)


def add_bench_parser(commands) -> None:
    parser = commands.add_parser("bench", help="speed and quality benchmarks (JSON under reports/bench/)")
    kinds = parser.add_subparsers(dest="kind", required=True)
    speed = kinds.add_parser("speed", help="training and inference images/second")
    speed.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    speed.add_argument("--profile", default="auto", help="model widths from this profile (gpu = full size)")
    speed.add_argument("--image-size", type=int, default=256)
    speed.add_argument("--batch-size", type=int, default=32)
    speed.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    speed.add_argument("--precisions", nargs="+", default=None, choices=PRECISIONS,
                       help="fp32 bf16 fp16 auto (default: fp32, plus auto on CUDA)")
    speed.add_argument("--compile", action="store_true", help="also measure torch.compile")
    speed.add_argument("--device", default="auto")
    quality = kinds.add_parser("quality", help="train both models, report valid/test Dice and time")
    quality.add_argument("--data-path", dest="data_root")
    quality.add_argument("--profile", default="auto")
    quality.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    quality.add_argument("--epochs", type=int)
    quality.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                         help="override a TrainConfig field, e.g. --set augment_strength=0.5 "
                              "--set model_kwargs='{\"base_width\": 32}' (values are read as JSON, else as text)")
    quality.add_argument("--seeds", nargs="+", type=int, default=[0], help="train once per seed; rows and a mean per model")
    quality.add_argument("--device", default="auto")
    from labkit.gpu_check import add_gpu_check_parser  # these two measure with this module's functions
    from labkit.rehearsal import add_rehearsal_parser

    add_gpu_check_parser(kinds)
    add_rehearsal_parser(kinds)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(step, images_per_step: int, steps: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return images_per_step * steps / (time.perf_counter() - started)


def speed_config(model_name: str, profile: str, image_size: int, batch_size: int, precision: str, compiled: bool,
                 device: torch.device, steps: int) -> TrainConfig:
    """The configuration one speed measurement trains with: the profile's model widths, and enough
    scheduled epochs for every timed step (the learning rate does not change the speed)."""
    return make_config(model_name, profile, image_size=image_size, batch_size=batch_size, precision=precision,
                       compile=compiled, device=str(device), epochs=10 * (steps + 3))


def speed_of(config: TrainConfig, steps: int) -> dict:
    """Model-only and end-to-end train img/s, and inference img/s, for one configuration. Both
    training measurements run the trainer's own `training_step` on a `TrainingState` built as
    `fit` builds it; end to end adds what `train_one_epoch` does before each step (indexing uint8
    photos on the device, augmenting, normalising)."""
    from labkit.train import SplitTensors, build_training_model, build_training_state, train_one_epoch, training_step

    device, image_size, batch_size = resolve_device(config.device), config.image_size, config.batch_size
    photos = batch_size * (steps + 3)
    state = build_training_state(config, build_training_model(config, device), photos)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    inputs = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=memory_format)
    targets = (torch.rand(batch_size, image_size, image_size, device=device) > 0.5).to(torch.uint8)
    train = SplitTensors(torch.randint(0, 256, (photos, 3, image_size, image_size), dtype=torch.uint8, device=device),
                         (torch.rand(photos, image_size, image_size, device=device) > 0.5).to(torch.uint8))

    @torch.inference_mode()
    def inference_step():
        with autocast(device, state.precision):
            state.step_model(inputs)

    state.step_model.train()
    model_only = images_per_second(lambda: training_step(state, inputs, targets), batch_size, steps, device)
    train_one_epoch(state, train, batch_size)  # warm-up epoch (compilation, allocator)
    synchronize(device)
    started = time.perf_counter()
    train_one_epoch(state, train, batch_size)
    synchronize(device)
    end_to_end = photos // batch_size * batch_size / (time.perf_counter() - started)
    state.step_model.eval()
    inference = images_per_second(inference_step, batch_size, steps, device)
    return {"model": config.model, "parameters": count_parameters(state.model), "precision": state.precision,
            "compiled": config.compile, "train_model_only": model_only, "train_end_to_end": end_to_end,
            "end_to_end_share": end_to_end / model_only, "inference": inference}


def machine(device: torch.device) -> dict:
    """The device that was measured, in words, with the torch version and the date."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{device.type}: " + (platform.processor() or platform.machine()) + f", {torch.get_num_threads()} threads"
    return {"device": name, "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "malloc": allocator.description()}


def save_report(name: str, report: dict, device: torch.device) -> None:
    """reports/bench/<name>_on_<device type>.json, labelled by the device that was measured; the
    name carries the settings, so runs don't overwrite each other."""
    folder = paths.reports_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_on_{device.type}.json"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, path)
    print(f"written: {path}", flush=True)


def speed_report_name(profile: str, image_size: int, batch_size: int, models: list[str], precisions: list[str],
                      compiled: bool) -> str:
    """`speed_<profile>_<size>px_batch<n>[_<model>]_<dtypes>[_compiled]`: every setting that changes
    the numbers is in the name, so one measurement never overwrites another."""
    parts = [f"speed_{profile}", f"{image_size}px", f"batch{batch_size}"]
    if set(models) != set(MODEL_NAMES):
        parts += models
    parts.append("-".join(str(DTYPES[precision]).split(".")[-1] for precision in precisions))
    if compiled:
        parts.append("compiled")
    return safe_file_name(marked_for_malloc("_".join(parts)))


def marked_for_malloc(name: str) -> str:
    """A timing report's name, marked `_default-malloc` when this process could have run with
    `labkit.allocator`'s settings (Linux with glibc) but did not, so the two measurements never
    overwrite each other."""
    return f"{name}_default-malloc" if allocator.supported() and not allocator.in_effect() else name


def format_speed(row: dict) -> str:
    return (f"{row['model']:14} {row['precision']:5} {'compiled' if row['compiled'] else 'eager':8} "
            f"train {row['train_model_only']:8.1f} img/s model-only, {row['train_end_to_end']:8.1f} end-to-end "
            f"({row['end_to_end_share']:.0%}); inference {row['inference']:8.1f} img/s")


def run_speed(args) -> None:
    """Measure every model, precision and (with --compile) eager and compiled; the report is
    rewritten after each measurement, so a run stopped by a time limit keeps what it measured."""
    device = resolve_device(args.device)
    precisions = [resolve_precision(precision, device)
                  for precision in args.precisions or (["fp32", "auto"] if device.type == "cuda" else ["fp32"])]
    precisions = list(dict.fromkeys(precisions))  # "auto" is fp32 on a CPU: measure it once
    profile = resolve_profile(args.profile)
    name = speed_report_name(profile, args.image_size, args.batch_size, args.models, precisions, args.compile)
    rows = []
    for model_name in args.models:
        for precision in precisions:
            for compiled in ([False, True] if args.compile else [False]):
                config = speed_config(model_name, profile, args.image_size, args.batch_size, precision, compiled,
                                      device, args.steps)
                rows.append(speed_of(config, args.steps))
                print(format_speed(rows[-1]), flush=True)
                save_report(name, {"machine": machine(device), "image_size": args.image_size,
                                   "batch_size": args.batch_size, "profile": profile, "rows": rows}, device)


def parse_settings(settings: list[str]) -> dict:
    """`["lr=0.001", "border=ignore"]` -> `{"lr": 0.001, "border": "ignore"}`: JSON values, else text."""
    overrides = {}
    for setting in settings:
        field, equals, value = setting.partition("=")
        if not equals or not field:
            raise ValueError(f"--set takes FIELD=VALUE, got {setting!r}")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    return overrides


def quality_of(config, data_root, device) -> dict:
    """Train one configuration, then score its best checkpoint on valid and test."""
    from labkit.evaluate import evaluate
    from labkit.train import fit

    started = time.perf_counter()
    result = fit(config)
    if result.interrupted:  # fit saved what it had; a half-trained model must not become a row
        raise KeyboardInterrupt
    row = {"model": config.model, "seed": config.seed, "profile": config.profile,
           "epochs": len(result.history), "train_steps": config.train_steps, "train_seconds": time.perf_counter() - started, "best_epoch": result.best.epoch}
    for split in ("valid", "test"):
        for tta in (False, True):
            scores = evaluate(result.best_checkpoint, split=split, root=data_root, tta=tta, device=device)
            suffix = "_tta" if tta else ""
            row[f"{split}_dice{suffix}"] = scores.metrics["resized"]["dice"]
            row[f"{split}_dice_original{suffix}"] = scores.metrics["original"]["dice"]
    row["config"] = config.to_dict()  # the whole recipe: profiles change, the report must not
    return row


def summarize(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every score, per model: settings are chosen on
    the valid means, and the spread says how much of a difference is only the seed."""
    summary = {}
    for model in dict.fromkeys(row["model"] for row in rows):
        own = [row for row in rows if row["model"] == model]
        summary[model] = {"seeds": len(own)}
        for key in own[0]:
            if key.endswith(("_dice", "_tta", "_original", "_seconds")):
                values = [row[key] for row in own]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                summary[model][key] = {"mean": statistics.mean(values), "std": spread}
    return summary


# TrainConfig fields that say where and under which name a run happened, not how it learned; the
# budget is compared separately, in optimiser steps.
NOT_RECIPE = ("seed", "run_name", "data_root", "device", "output_dir", "compile", "epochs", "train_steps")


def trains_like_profile(report: dict, model: str, profile: str, train_count: int) -> bool:
    """Did a quality report's runs of `model` train as `profile` trains it now?

    The budget is compared as the optimiser steps it makes on `train_count` training photos, so a
    run of 40 epochs and one of the 440 steps those epochs make on 180 photos are the same recipe.
    Older reports keep no configuration, only their overrides and the epochs each run trained;
    their recipe is the profile with those overrides.
    """
    from labkit.train import epoch_plan

    row = next(row for row in report["rows"] if row["model"] == model)
    if "config" in row:
        recipe = TrainConfig.from_dict(row["config"])
    else:
        settings = {key: value for key, value in report["overrides"].items() if key not in ("epochs", "train_steps")}
        recipe = make_config(model, profile, epochs=row["epochs"], **settings)
    current = make_config(model, profile)

    def learned(config: TrainConfig) -> dict:
        values = json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as saved reports hold them
        return {key: value for key, value in values.items() if key not in NOT_RECIPE}

    same_steps = sum(epoch_plan(recipe, train_count)) == sum(epoch_plan(current, train_count))
    return same_steps and learned(recipe) == learned(current)


def quality_report_name(profile: str, models: list[str], seeds: list[int], overrides: dict) -> str:
    """`quality_<profile>[_<model>][_seeds-0-1-2][_<field>-<value>...]`: runs that differ in what they
    trained, on what seeds or with which settings never overwrite each other's report."""
    parts = [f"quality_{profile}"]
    if set(models) != set(MODEL_NAMES):
        parts += models
    if seeds != [0]:
        parts.append("seeds-" + "-".join(str(seed) for seed in seeds))
    for key, value in sorted(overrides.items()):
        if isinstance(value, dict):  # model_kwargs={"base_width": 32} -> model_kwargs-base_width-32
            value = "_".join(f"{inner}-{inner_value}" for inner, inner_value in sorted(value.items()))
        parts.append(f"{key}-{value}")
    return safe_file_name("_".join(parts))


def run_quality(args) -> None:
    """Train and score every model on every seed. The report is rewritten after each run, so a
    benchmark stopped by a time limit or Ctrl-C keeps the runs it finished (`runs_finished` of
    `runs_planned`)."""
    overrides = parse_settings(args.settings)
    if args.epochs:
        overrides["epochs"] = args.epochs
    profile = resolve_profile(args.profile)
    name = quality_report_name(profile, args.models, args.seeds, overrides)
    planned = len(args.models) * len(args.seeds)
    rows = []
    for model_name in args.models:
        for seed in args.seeds:
            run_name = f"bench_{model_name}" + (f"_seed{seed}" if len(args.seeds) > 1 else "")
            config = make_config(model_name, profile, data_root=args.data_root, device=args.device, seed=seed,
                                 run_name=run_name, **overrides)
            rows.append(quality_of(config, args.data_root, args.device))
            print(json.dumps(rows[-1], indent=1))
            save_report(name, {"machine": machine(resolve_device(args.device)), "data_root": args.data_root, "overrides": overrides,
                               "seeds": args.seeds, "runs_finished": len(rows), "runs_planned": planned,
                               "summary": summarize(rows), "rows": rows}, resolve_device(args.device))
    for model, scores in summarize(rows).items():
        print(f"{model:14} over {scores['seeds']} seed(s): valid Dice {scores['valid_dice']['mean']:.4f} "
              f"+- {scores['valid_dice']['std']:.4f}, test Dice {scores['test_dice']['mean']:.4f} "
              f"+- {scores['test_dice']['std']:.4f}, {scores['train_seconds']['mean']:.0f} s of training")


def safe_file_name(name: str) -> str:
    return "".join(character if character.isalnum() or character in "._-" else "_" for character in name)


def run_bench(args) -> int | None:
    from labkit.gpu_check import run_gpu_check
    from labkit.rehearsal import run_rehearsal

    return {"speed": run_speed, "quality": run_quality, "gpu-check": run_gpu_check,
            "rehearsal": run_rehearsal}[args.kind](args)
