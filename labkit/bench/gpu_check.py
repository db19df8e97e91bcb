"""`python -m labkit bench gpu-check`: prove the GPU path in one short run, writing as it goes.

A GPU is lent to this project for about 15 minutes at a time, one command of at most 10 minutes,
so the check is planned to fit 6 minutes on one H100/H200, compilation and data loading included
(`--plan` prints the plan without running it). Its stages run in order of value, each within its
own time budget: a stage out of time is recorded as such and the next one starts. The report
(`reports/bench/gpu_check[_smoke]_on_<device>.json`) is rewritten after every result, so a run cut
short keeps what it finished.

1. fit bf16: the real `fit`, progress bar on, with every epoch's steps after the first under
   `torch.cuda.set_sync_debug_mode("error")` (`labkit.device.host_syncs_forbidden`);
2-3. quality: each model trained with the `gpu` profile on the data at hand, test Dice against the
   target stated for that data (recorded; it does not decide the exit code);
4. fit fp16: as 1, with loss scaling (the path of a T4 or V100);
5. resume: a run stopped after its first epoch and resumed ends where an uninterrupted run ends;
6. torchrun: one process on one GPU (NCCL, DistributedDataParallel, SyncBatchNorm) trains into one
   checkpoint, which then evaluates;
7. speed eager: both models at 256 px, batch 32, mixed precision, model-only and end to end;
8. speed compiled: the same compiled, last, since compiling costs the most and proves the least.

The data travels: the real 301-photo sample is used wherever the tree has it, else the synthetic
set is made; the first line and the report say which. The exit code is 1 when a path check (fit,
resume, torchrun) failed or ran out of time; speed and quality are measured against their targets
and recorded, never turned into a failure. `--smoke` runs every stage at toy sizes on any machine
(no targets), as `make test` does on the CPU.
"""

import contextlib
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from labkit.bench.check_data import QUALITY_TARGETS, find_data
from labkit.bench.check_stages import (ASSUMED, SPEED_TARGETS, CheckContext, StageResult, check_fit, check_quality,
                                       check_resume, check_speed, check_torchrun)
from labkit.bench.reports import machine, save_report
from labkit.config import TrainConfig
from labkit.device import resolve_device
from labkit.errors import one_line

WHOLE_CHECK_SECONDS = 360  # on one H100/H200, everything included
STARTUP_SECONDS = 20  # Python, torch, the CUDA context: before the first stage, outside every budget
SMOKE_BUDGET_SECONDS = 600  # each stage of the smoke form, on a loaded CPU: a hang, not slowness, must stop it


# ---------------------------------------------------------------- the record


MARKS = {"passed": "PASS", "failed": "FAIL", "measured": "----", "out of time": "TIME", "skipped": "SKIP"}


class Recorder:
    """Prints each result as it comes and rewrites the report after it."""

    def __init__(self, context: CheckContext, plan: list[dict]) -> None:
        self.context = context
        self.plan = plan
        self.results: list[StageResult] = []
        self.started = time.perf_counter()
        self.name = "gpu_check_smoke" if context.smoke else "gpu_check"

    def add(self, result: StageResult) -> None:
        self.results.append(result)
        print(f"[{time.perf_counter() - self.started:6.0f} s] {MARKS[result.status]} {result.stage}: {result.detail}",
              flush=True)
        self.save()

    def save(self) -> None:
        context = self.context
        save_report(self.name, {
            "machine": machine(context.device), "smoke": context.smoke,
            "data": {"root": str(context.data.root), "kind": context.data.kind, "found": context.data.found,
                     "photos": context.data.photos, "description": context.data.describe()},
            "quality_target": None if context.smoke else asdict(QUALITY_TARGETS[context.data.kind]),
            "speed_targets": None if context.smoke else SPEED_TARGETS, "plan": self.plan,
            "seconds": time.perf_counter() - self.started, "results": [asdict(item) for item in self.results],
        }, context.device)

    def failed_path_checks(self) -> list[StageResult]:
        path_checks = {stage.name for stage in STAGES.values() if stage.path_check}
        return [result for result in self.results
                if result.stage.split(":")[0] in path_checks and result.status in ("failed", "out of time")]


class OutOfTime(Exception):
    """A stage used up its time budget."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise OutOfTime in this thread once `seconds` have passed (SIGALRM; where there is none, or
    off the main thread, the block runs unlimited and its overrun is recorded afterwards)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_stage(recorder: Recorder, stage: "Stage", budget: float) -> None:
    """Run one stage within `budget` seconds; an error fails it with its reason, running out of
    time marks it so, and the check goes on either way."""
    started = time.perf_counter()
    try:
        with time_limit(budget):
            for result in stage.run(recorder.context):
                recorder.add(result)
    except OutOfTime:
        recorder.add(StageResult(stage.name, "out of time", f"stopped at its budget of {budget:.0f} s"))
    except Exception as error:  # the check must report every stage it can, not stop at the first
        recorder.add(StageResult(stage.name, "failed", one_line(error, with_type=True),
                                 {"traceback": traceback.format_exc()}))
    else:
        seconds = time.perf_counter() - started
        if seconds > budget:  # only where no timer could stop it
            recorder.add(StageResult(stage.name, "out of time", f"took {seconds:.0f} s of a {budget:.0f} s budget"))


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Stage:
    """One stage of the check: what it proves, its budget on one H100/H200, and how long it should take."""

    name: str
    does: str
    run: Callable[[CheckContext], Iterator[StageResult]]
    budget: float  # seconds on one H100/H200
    estimate: Callable[[CheckContext], float]  # seconds on one H100/H200, from counted work and ASSUMED
    path_check: bool  # its failure fails the check; otherwise it measures


def training_seconds(config: TrainConfig, train_photos: int, valid_photos: int) -> float:
    """Estimated seconds of `fit(config)` at the assumed speeds: steps, validation, per-epoch cost,
    and the tenth of the time checkpoints may take."""
    from labkit.train import epoch_plan

    speed = ASSUMED["train_images_per_second"][config.model]
    plan = epoch_plan(config, min(train_photos, config.train_limit or train_photos))
    training = sum(plan) * config.batch_size / speed
    validation = len(plan) * valid_photos / (speed * ASSUMED["inference_speedup"])
    return 1.1 * (training + validation) + len(plan) * ASSUMED["seconds_per_epoch"] + ASSUMED["seconds_per_fit"]


def scoring_seconds(model: str, photos: int) -> float:
    return photos / (ASSUMED["train_images_per_second"][model] * ASSUMED["inference_speedup"])


def estimate_fit(first: bool) -> Callable[[CheckContext], float]:
    def estimate(context: CheckContext) -> float:
        photos = context.data.photos
        # The first stage fills the cache; each precision has cuDNN choose its algorithms again.
        decoding = sum(photos.values()) / ASSUMED["decoded_photos_per_second"] if first else 0.0
        return (decoding + ASSUMED["first_use_seconds"]["unet"]
                + training_seconds(context.path_config("unet", "plan"), photos["train"], photos["valid"]))
    return estimate


def estimate_quality(model: str) -> Callable[[CheckContext], float]:
    def estimate(context: CheckContext) -> float:
        photos = context.data.photos
        first_use = ASSUMED["first_use_seconds"][model] if model != "unet" else 0.0  # fit-bf16 met the UNet
        return (first_use + training_seconds(context.quality_config(model), photos["train"], photos["valid"])
                + 2 * scoring_seconds(model, photos["valid"] + photos["test"]))  # at original size: resized logits
    return estimate


def estimate_resume(context: CheckContext) -> float:
    photos = context.data.photos  # three fits: two epochs, one and its resumption
    one_epoch = training_seconds(context.path_config("unet", "plan", epochs=1), photos["train"], photos["valid"])
    return 4 * one_epoch + ASSUMED["seconds_per_fit"]


def estimate_torchrun(context: CheckContext) -> float:
    photos = context.data.photos
    config = context.path_config("unet", "plan", epochs=2)
    return (ASSUMED["process_start_seconds"] + ASSUMED["first_use_seconds"]["unet"]
            + training_seconds(config, photos["train"], photos["valid"]) + scoring_seconds("unet", photos["test"]))


def estimate_speed(compiled: bool) -> Callable[[CheckContext], float]:
    def estimate(context: CheckContext) -> float:
        seconds = 0.0
        for model in context.models(compiled):
            case = context.speed_case(model, compiled)
            steps = case.steps + 3  # with the warm-up
            speed = ASSUMED["train_images_per_second"][model]
            training = 3 * steps * case.batch_size / speed  # model-only, then two end-to-end epochs
            inference = steps * case.batch_size / (speed * ASSUMED["inference_speedup"]) if case.inference else 0.0
            seconds += training + inference + 2  # and building the model, optimiser and random photos
            seconds += ASSUMED["compile_seconds"][model] if compiled else 0
        return seconds
    return estimate


STAGES = {stage.name: stage for stage in (
    Stage("fit-bf16", "the real fit in bf16, progress bar on, steps sync-free after the first epoch",
          lambda context: check_fit(context, "bf16"), 20, estimate_fit(first=True), True),
    Stage("quality-unet", "the UNet trained with the gpu profile: valid and test Dice against the data's target",
          lambda context: check_quality(context, "unet"), 85, estimate_quality("unet"), False),
    Stage("quality-resnet34_unet", "the ResNet34-UNet likewise",
          lambda context: check_quality(context, "resnet34_unet"), 60, estimate_quality("resnet34_unet"), False),
    Stage("fit-fp16", "the real fit in fp16 with loss scaling (the T4 path), sync-free likewise",
          lambda context: check_fit(context, "fp16"), 20, estimate_fit(first=False), True),
    Stage("resume", "a run stopped after epoch 1 and resumed ends where the run left alone ends",
          check_resume, 15, estimate_resume, True),
    Stage("torchrun", "one process under torchrun (NCCL, DDP, SyncBatchNorm) into one checkpoint that evaluates",
          check_torchrun, 45, estimate_torchrun, True),
    Stage("speed-eager", "both models at 256 px, batch 32, mixed precision: training model-only and end to end, inference",
          lambda context: check_speed(context, compiled=False), 10, estimate_speed(compiled=False), False),
    Stage("speed-compiled", "training speed compiled with torch.compile, last: it costs the most and proves the least",
          lambda context: check_speed(context, compiled=True), 85, estimate_speed(compiled=True), False),
)}


def make_plan(context: CheckContext, names: list[str]) -> list[dict]:
    """The stages to run, in order, with their budgets and estimates (seconds on one H100/H200)."""
    return [{"stage": name, "does": STAGES[name].does, "budget_seconds": STAGES[name].budget,
             "estimate_seconds": round(STAGES[name].estimate(context), 1), "path_check": STAGES[name].path_check}
            for name in names]


def format_plan(context: CheckContext, plan: list[dict]) -> str:
    lines = [f"{'stage':24} {'budget':>7} {'estimate':>9}  what it does"]
    for row in plan:
        lines.append(f"{row['stage']:24} {row['budget_seconds']:6.0f}s {row['estimate_seconds']:8.0f}s  {row['does']}")
    budgets = sum(row["budget_seconds"] for row in plan) + STARTUP_SECONDS
    estimate = sum(row["estimate_seconds"] for row in plan) + STARTUP_SECONDS
    held = sum(min(row["estimate_seconds"], row["budget_seconds"]) for row in plan) + STARTUP_SECONDS
    lines.append(f"{'start-up':24} {STARTUP_SECONDS:6.0f}s {STARTUP_SECONDS:8.0f}s  Python, torch, the CUDA context")
    lines.append(f"{'in all':24} {budgets:6.0f}s {estimate:8.0f}s  (the whole check must fit {WHOLE_CHECK_SECONDS} s; "
                 f"with each stage held to its budget, about {held:.0f} s)")
    for row in plan:
        if row["estimate_seconds"] > row["budget_seconds"]:
            lines.append(f"{row['stage']} is estimated past its budget: what it has not finished by then is "
                         "recorded as out of time")
    target = QUALITY_TARGETS[context.data.kind]
    lines.append(f"quality target on this data: {target.test_dice or 'none'} ({target.why})")
    lines.append("estimates assume, on one H100/H200: " + ", ".join(f"{key} {value}" for key, value in ASSUMED.items()))
    return "\n".join(lines)


def run_gpu_check(*, data_root: str | None, smoke: bool, plan_only: bool, stages: list[str] | None,
                  device: str) -> int:
    """Run the stages asked for (all by default), each within its budget; exit 1 if a path check
    failed or ran out of time.

    Args:
        smoke: toy sizes and no targets, so that a CPU proves the code paths.
        plan_only: print the plan and stop.
    """
    names = stages or list(STAGES)
    with tempfile.TemporaryDirectory(prefix="labkit-gpu-check-") as folder:
        context = CheckContext(smoke, resolve_device(device), find_data(data_root, create=not plan_only), Path(folder),
                               budgets={name: stage.budget for name, stage in STAGES.items()})
        print(f"gpu-check{' --smoke' if smoke else ''} on {context.device}: data {context.data.describe()}", flush=True)
        plan = make_plan(context, names)
        if plan_only:
            print(format_plan(context, plan))
            return 0
        recorder = Recorder(context, plan)
        recorder.save()
        for name in names:
            run_stage(recorder, STAGES[name], SMOKE_BUDGET_SECONDS if smoke else STAGES[name].budget)
    failed = recorder.failed_path_checks()
    print(f"{len(recorder.results)} results, {len(failed)} path checks failed or out of time, "
          f"{time.perf_counter() - recorder.started:.0f} s in all", flush=True)
    return 1 if failed else 0
