"""`python -m labkit bench quality`: train with a profile (plus `--set` overrides, once per seed),
then score valid and test (mean per-image Dice at the training size and at original resolution,
with and without flip TTA) and the wall time. Settings are chosen on valid, never on test.

`--folds K` cross-validates instead: trainval is cut into K folds by line, each held out in turn
(`labkit.data.splits`), and each run is scored on its held-out fold only, best epoch and last;
test is not touched. The mean over folds is what a setting is chosen by, and their spread says how
much of a difference is only which photos validated.
"""

import json
import statistics
import time

from labkit.bench.reports import machine, report_path, safe_file_name, save_report
from labkit.config import TrainConfig, make_config, resolve_profile
from labkit.device import resolve_device
from labkit.models import MODELS

MODEL_NAMES = tuple(MODELS)


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


def quality_of(config: TrainConfig, data_root: str | None, device: str, splits: tuple[str, ...] = ("valid", "test"),
               tta: tuple[bool, ...] = (False, True)) -> dict:
    """Train one configuration, then score its best checkpoint on `splits`, without and with TTA."""
    from labkit.evaluate import evaluate
    from labkit.train import fit

    started = time.perf_counter()
    result = fit(config)
    if result.interrupted:  # fit saved what it had; a half-trained model must not become a row
        raise KeyboardInterrupt
    row = {"model": config.model, "seed": config.seed, "profile": config.profile, "epochs": len(result.history),
           "train_steps": config.train_steps, "train_seconds": time.perf_counter() - started,
           "best_epoch": result.best.epoch, "valid_fold": config.valid_fold, "folds": config.folds,
           "last_valid_dice": result.history[-1].valid_dice}
    for split in splits:
        for flipped in tta:
            scores = evaluate(result.best_checkpoint, split=split, root=data_root, tta=flipped, device=device)
            suffix = "_tta" if flipped else ""
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


def quality_report_name(profile: str, models: list[str], seeds: list[int], overrides: dict,
                        folds: int | None = None) -> str:
    """`quality_<profile>[_<model>][_seeds-0-1-2][_folds-K][_<field>-<value>...]`: runs that differ in
    what they trained, on what seeds, folds or settings never overwrite each other's report."""
    parts = [f"quality_{profile}"]
    if set(models) != set(MODEL_NAMES):
        parts += models
    if seeds != [0]:
        parts.append("seeds-" + "-".join(str(seed) for seed in seeds))
    if folds:
        parts.append(f"folds-{folds}")
    for key, value in sorted(overrides.items()):
        if isinstance(value, dict):  # model_kwargs={"base_width": 32} -> model_kwargs-base_width-32
            value = "_".join(f"{inner}-{inner_value}" for inner, inner_value in sorted(value.items()))
        parts.append(f"{key}-{value}")
    return safe_file_name("_".join(parts))


def refuse_to_overwrite_another_recipe(path, configs: dict[str, TrainConfig]) -> None:
    """Refuse to run when the report this run would write holds runs of another recipe: a report is
    named by the profile and the settings given, and a profile can change after its runs (the cpu
    profile's UNet went from 128 px and 440 steps to 96 px and 780), so the same command can mean
    another recipe. Its runs took an hour to measure; they are not overwritten.

    Raises:
        ValueError: naming the report, each field that differs, and the two ways out.
    """
    from labkit.recipes import recipe_fields

    if not path.is_file():
        return
    rows = json.loads(path.read_text()).get("rows", [])
    for model, config in configs.items():
        saved = [row.get("config") for row in rows if row.get("model") == model]
        if not saved:
            continue
        if saved[0] is None:
            raise ValueError(f"{path} holds runs of {model} without their recipe; move it aside to run this again")
        planned, earlier = recipe_fields(config), recipe_fields(TrainConfig.from_dict(saved[0]))
        changed = [f"{field} {earlier.get(field)} there, {value} now" for field, value in planned.items()
                   if earlier.get(field) != value]
        if changed:
            raise ValueError(f"{path} holds runs of {model} with another recipe ({'; '.join(changed)}); pin that "
                             f"recipe with --set FIELD=VALUE to write a report of its own name, or move the report "
                             f"aside to replace it")


def run_quality(*, data_root: str | None, profile: str, models: list[str], epochs: int | None,
                settings: list[str], seeds: list[int], device: str, folds: int | None = None) -> None:
    """Train and score every model on every seed (and, with `folds`, on every fold). The report is
    rewritten after each run, so a benchmark stopped by a time limit or Ctrl-C keeps the runs it
    finished (`runs_finished` of `runs_planned`). It records the machine, date and code as they were
    when the run started: an hour of folds can cross midnight or outlast an edit.

    Args:
        settings: TrainConfig overrides as FIELD=VALUE (see `parse_settings`).
        epochs: replaces the profile's budget.
        folds: cross-validate over this many folds of trainval, scoring valid only (see the module).
    """
    overrides = parse_settings(settings)
    if epochs:
        overrides["epochs"] = epochs
    if folds is not None and folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    profile = resolve_profile(profile)
    measured_on = resolve_device(device)
    name = quality_report_name(profile, models, seeds, overrides, folds)
    refuse_to_overwrite_another_recipe(report_path(name, measured_on), {
        model_name: make_config(model_name, profile, data_root=data_root, device=device, **overrides)
        for model_name in models})
    held_out = range(folds) if folds else [None]
    planned = len(models) * len(seeds) * len(held_out)
    measured = machine(measured_on)  # the machine, date and code as the run starts, not as its last fold ends
    rows = []
    for model_name in models:
        for seed in seeds:
            for fold in held_out:
                run_name = (f"bench_{model_name}" + (f"_seed{seed}" if len(seeds) > 1 else "")
                            + (f"_fold{fold}of{folds}" if folds else ""))
                cross = {"valid_fold": fold, "folds": folds} if folds else {}
                config = make_config(model_name, profile, data_root=data_root, device=device, seed=seed,
                                     run_name=run_name, **cross, **overrides)
                scored = {"splits": ("valid",), "tta": (False,)} if folds else {}
                rows.append(quality_of(config, data_root, device, **scored))
                print(json.dumps(rows[-1], indent=1))
                save_report(name, {"machine": measured, "data_root": data_root, "overrides": overrides,
                                   "seeds": seeds, "folds": folds, "runs_finished": len(rows), "runs_planned": planned,
                                   "summary": summarize(rows), "rows": rows}, measured_on)
    for model, scores in summarize(rows).items():
        test = (f", test Dice {scores['test_dice']['mean']:.4f} +- {scores['test_dice']['std']:.4f}"
                if "test_dice" in scores else "")
        print(f"{model:14} over {scores['seeds']} run(s): valid Dice {scores['valid_dice']['mean']:.4f} "
              f"+- {scores['valid_dice']['std']:.4f} (last epoch {scores['last_valid_dice']['mean']:.4f}){test}, "
              f"{scores['train_seconds']['mean']:.0f} s of training")
