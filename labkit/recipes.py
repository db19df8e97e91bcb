"""Did a saved run train as a profile trains now? Comparing training recipes across time.

The study reports under reports/bench/ (`python -m labkit bench quality`) keep each run's whole
configuration. Notebook 03 marks which study runs trained exactly as a reference recipe, e.g. its profile today.
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


def recipe_fields(config: TrainConfig) -> dict:
    """The learned fields and the budget as the config states it (`epochs` or `train_steps`): what a
    saved report's runs must share with a new run that would join them."""
    return {**learned_fields(config), "epochs": config.epochs, "train_steps": config.train_steps}


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


def report_recipe(report: dict, model: str) -> TrainConfig:
    """How a quality report's runs of `model` were trained: the configuration saved with its first row."""
    row = next(row for row in report["rows"] if row["model"] == model)
    return TrainConfig.from_dict(row["config"])


def changes_from(report: dict, reference: TrainConfig, train_count: int) -> dict:
    """How a quality report's runs of `reference.model` differ from the `reference` recipe on
    `train_count` training photos: {} when they trained alike."""
    return recipe_changes(report_recipe(report, reference.model), reference, train_count)


def changes_from_profile(report: dict, model: str, profile: str, train_count: int) -> dict:
    """How a quality report's runs of `model` differ from `profile` as it trains now, on
    `train_count` training photos: {} when they trained as the profile does."""
    return changes_from(report, make_config(model, profile), train_count)


def closest_reference(changes: dict, candidates: dict) -> object | None:
    """Which run a run with `changes` should be compared with, so that the comparison measures as few
    changes at once as it can: of `candidates` (a key for each run -> its changes, all from one
    recipe, e.g. the profile's {}), the one whose changes are some, but not all, of `changes` (each
    field with the same value), and the most of them; the first such in `candidates`' order on a tie.
    None when no candidate is. A field is compared whole: `model_kwargs` of {"deep_supervision": true}
    is not part of `model_kwargs` of {"deep_supervision": true, "base_width": 32}.

    A run with {"weight_decay": 0.05, "warmup_fraction": 0.1} is compared with a run of
    {"warmup_fraction": 0.1}, if there is one, not with the profile: against the profile it would
    measure the warm-up as well as the decay.
    """
    within = [key for key, theirs in candidates.items() if theirs.items() < changes.items()]
    return max(within, key=lambda key: len(candidates[key]), default=None)
