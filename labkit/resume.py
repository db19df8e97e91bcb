"""Resuming a run from its `last.pt`: which saved runs may continue, and loading one back.

A run continues with the identical schedule only when nothing that changes the result differs:
the configuration (except where and how fast it runs), the data, the precision and the number of
processes. It may move between devices (a CPU laptop and a GPU, one GPU and another) as long as it
keeps its precision, so the loss scaler's state and the numbers stay meaningful.
"""

import json
from pathlib import Path

from labkit.checkpoint import load_checkpoint
from labkit.config import TrainConfig
from labkit.history import EpochRecord
from labkit.training_state import TrainingRun

# Fields that may differ between a run and its resumption without changing what is computed. The
# data root is compared resolved (None and the path it resolves to are the same data) and the
# precision too ("auto" and what it resolved to are the same precision).
RESUMABLE_DIFFERENCES = {"device", "compile", "output_dir", "data_root", "precision"}


def config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """Fields in which `config` differs from a checkpoint's saved configuration, ignoring those
    that do not change the result (device, compile, output folder) and those callers compare
    resolved (data root, precision). A field the saved configuration predates counts as its default."""
    defaults = TrainConfig().to_dict()
    current, saved, defaults = (json.loads(json.dumps(values)) for values in (config.to_dict(), saved, defaults))
    return sorted(key for key in current
                  if key not in RESUMABLE_DIFFERENCES and saved.get(key, defaults[key]) != current[key])


def check_resumable(last: dict, path: Path, run: TrainingRun) -> None:
    """Refuse a `last.pt` that was trained differently from `run`: another configuration or data,
    another precision, or another number of processes (the batch of a step and the schedule
    depend on it).

    Raises:
        ValueError: one line saying how it differs and what to do.
    """
    state = run.state
    differences = config_differences(last["config"], run.config)
    if last["data"]["root"] != run.data.info["root"]:
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


def resume_from_last(run: TrainingRun) -> int:
    """Load the run folder's `last.pt` into the run: the weights, the optimisation state, the
    history and the best record. Returns the number of epochs it holds, where training continues.
    Under torchrun every rank reads it.

    Raises:
        FileNotFoundError: there is no `last.pt` yet.
        ValueError: the saved run was trained differently; one line saying how.
    """
    path = run.result.run_dir / "last.pt"
    last = load_checkpoint(path, map_location=run.state.device)
    check_resumable(last, path, run)
    run.state.model.load_state_dict(last["state_dict"])
    run.state.load_optimization_state(last)
    run.result.history = [EpochRecord.from_dict(row) for row in last["history"]]
    run.result.best = EpochRecord.from_dict(last["best"]) if last.get("best") else None
    return last["epoch"]
