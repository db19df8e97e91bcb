"""Did a saved run train as a profile trains now? Comparing training recipes across time.

The study reports under reports/bench/ (`python -m labkit bench quality`) keep each run's whole
configuration, or, the oldest of them, only their overrides and the epochs each run trained.
Notebook 03 marks which study runs trained exactly as its profile trains today.
"""

import json

from labkit.config import TrainConfig, make_config
from labkit.train import epoch_plan

# TrainConfig fields that say where, on which photos and under which name a run happened, not how
# it learned (a cross-validation holds out each fold in turn with one recipe); the budget is compared
# separately, in optimiser steps.
NOT_RECIPE = ("seed", "run_name", "data_root", "device", "output_dir", "compile", "folds", "valid_fold", "epochs",
              "train_steps")


def learned_fields(config: TrainConfig) -> dict:
    """The fields that decide what a run learns, as a saved report holds them (tuples as lists)."""
    values = json.loads(json.dumps(config.to_dict()))
    return {key: value for key, value in values.items() if key not in NOT_RECIPE}


def recipe_changes(recipe: TrainConfig, current: TrainConfig, train_count: int) -> dict:
    """What `recipe` does differently from `current` on `train_count` photos: its value of each
    learned field that differs, and its `train_steps` when the two take different numbers of
    optimiser steps (40 epochs and the 440 steps they make on 180 photos are one budget). Empty:
    the two train alike."""
    theirs, ours = learned_fields(recipe), learned_fields(current)
    changes = {key: value for key, value in theirs.items() if ours.get(key) != value}
    steps = sum(epoch_plan(recipe, train_count))
    if steps != sum(epoch_plan(current, train_count)):
        changes["train_steps"] = steps
    return changes


def report_recipe(report: dict, model: str, profile: str) -> TrainConfig:
    """How a quality report's runs of `model` were trained: the saved configuration of its first
    row, or, in older reports that keep only their overrides and each run's epochs, the profile
    with those overrides."""
    row = next(row for row in report["rows"] if row["model"] == model)
    if "config" in row:
        return TrainConfig.from_dict(row["config"])
    settings = {key: value for key, value in report["overrides"].items() if key not in ("epochs", "train_steps")}
    return make_config(model, profile, epochs=row["epochs"], **settings)


def trains_like_profile(report: dict, model: str, profile: str, train_count: int) -> bool:
    """Did a quality report's runs of `model` train as `profile` trains it now, on `train_count`
    training photos?"""
    return not changes_from_profile(report, model, profile, train_count)


def changes_from_profile(report: dict, model: str, profile: str, train_count: int) -> dict:
    """How a quality report's runs of `model` differ from `profile` as it trains now, on
    `train_count` training photos: {} when they trained as the profile does."""
    return recipe_changes(report_recipe(report, model, profile), make_config(model, profile), train_count)
