"""`python -m labkit bench gpu-check`: prove the GPU path in a few minutes, writing as it goes.

Stages, each recorded the moment it ends (printed, and rewritten into
`reports/bench/gpu_check[_smoke]_on_<device>.json`), so a run cut short keeps what it finished:

1. training: short runs in bf16, in fp16 (with loss scaling) and compiled, each saved and reloaded;
2. resume: a run stopped after its first epoch and resumed ends where an uninterrupted run ends;
3. sync-free steps: training steps under `torch.cuda.set_sync_debug_mode("error")`, which raises
   on any operation that makes the CPU wait for the GPU (CUDA only);
4. speed: `bench speed` for both models (model-only and end to end; fp32 eager, mixed precision
   eager and compiled; the smoke form measures fp32 eager only);
5. quality: both models trained with the `gpu` profile, valid and test Dice and wall time.

The full check measures against TARGETS. `--smoke` runs the same stages at toy sizes so that a
CPU proves the code paths in `make test`; its numbers are not compared with the targets.
"""

import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from labkit.bench import machine, save_report, speed_config, speed_of
from labkit.config import make_config
from labkit.device import resolve_device
from labkit.errors import one_line
from labkit.models import MODELS

# What one H100/H200 should reach (the targets of the GPU work); checked only by the full check.
TARGETS = {
    "train_images_per_second": {"unet": 900, "resnet34_unet": 2500},
    "end_to_end_share": 0.9,  # end-to-end training speed as a share of model-only
    "test_dice": 0.90,
    "train_seconds": 180,
}
SYNC_FREE_STEPS = 5


@dataclass
class CheckSettings:
    """Sizes of one gpu-check: the full one, or the smoke one a CPU runs in seconds."""

    smoke: bool
    device: torch.device
    data_root: str | None
    profile: str  # model widths and the quality stage's recipe
    image_size: int  # speed stage
    batch_size: int  # speed stage
    speed_steps: int
    speed_variants: tuple[tuple[str, bool], ...]  # (precision, compiled) pairs the speed stage measures

    @classmethod
    def make(cls, smoke: bool, device: str, data_root: str | None) -> "CheckSettings":
        if smoke:  # compiling the ResNet34 encoder takes minutes on a CPU; the training stage compiles already
            return cls(True, resolve_device(device), data_root, "smoke", 32, 4, 1, (("fp32", False),))
        variants = (("fp32", False), ("auto", False), ("auto", True))
        return cls(False, resolve_device(device), data_root, "gpu", 256, 32, 10, variants)

    def smoke_config(self, model: str, output_dir: str, run_name: str, **overrides):
        """A toy training run: tiny model, tiny photos, a few steps."""
        settings = {"image_size": 32, "epochs": 2, "train_limit": 16, **overrides}
        return make_config(model, "smoke", data_root=self.data_root, device=str(self.device), output_dir=output_dir,
                           run_name=run_name, **settings)


@dataclass
class StageResult:
    stage: str
    passed: bool | None  # None: skipped, or not compared with a target
    detail: str
    values: dict = field(default_factory=dict)


class Recorder:
    """Prints each result as it comes and rewrites the report after it."""

    def __init__(self, settings: CheckSettings) -> None:
        self.settings = settings
        self.results: list[StageResult] = []
        self.started = time.perf_counter()
        self.name = "gpu_check_smoke" if settings.smoke else "gpu_check"

    def add(self, result: StageResult) -> None:
        self.results.append(result)
        mark = {True: "PASS", False: "FAIL", None: "----"}[result.passed]
        print(f"[{time.perf_counter() - self.started:6.0f} s] {mark} {result.stage}: {result.detail}", flush=True)
        save_report(self.name, {"machine": machine(self.settings.device), "smoke": self.settings.smoke,
                                "targets": TARGETS, "results": [asdict(item) for item in self.results]},
                    self.settings.device)

    def run(self, stage: str, function, *args) -> None:
        """Run one stage; an error fails that stage, with its reason, and the check goes on."""
        try:
            for result in function(*args):
                self.add(result)
        except Exception as error:  # the check must report every stage it can, not stop at the first
            self.add(StageResult(stage, False, one_line(error, with_type=True), {"traceback": traceback.format_exc()}))

    @property
    def failed(self) -> list[StageResult]:
        return [result for result in self.results if result.passed is False]


def check_training(settings: CheckSettings, folder: str):
    """Short runs in bf16, fp16 and compiled: finite losses, a checkpoint that reloads and says
    which precision trained it."""
    from labkit.checkpoint import load_trained
    from labkit.train import fit

    for precision, compiled in (("bf16", False), ("fp16", False), ("auto", True)):
        name = f"{precision}{'_compiled' if compiled else ''}"
        config = settings.smoke_config("unet", folder, f"train_{name}", precision=precision, compile=compiled)
        started = time.perf_counter()
        result = fit(config, progress=False)
        trained = load_trained(result.best_checkpoint)
        losses = [record.train_loss for record in result.history]
        passed = all(map(math.isfinite, losses)) and len(losses) == config.epochs
        yield StageResult(f"training {name}", passed,
                          f"{len(losses)} epochs in {trained.info.precision}, losses {[round(x, 4) for x in losses]}, "
                          f"{time.perf_counter() - started:.1f} s",
                          {"precision": trained.info.precision, "losses": losses})


def check_resume(settings: CheckSettings, folder: str):
    """Stop a run after epoch 1, resume it, and compare with the same run left alone."""
    from labkit.train import fit

    whole = fit(settings.smoke_config("unet", folder, "resume_whole"), progress=False)

    def stop_after_first(history):
        if len(history) == 1:
            raise KeyboardInterrupt

    config = settings.smoke_config("unet", folder, "resume_stopped")
    fit(config, progress=False, on_epoch_end=stop_after_first)
    resumed = fit(config, resume=True, progress=False)
    difference = max(abs(a.train_loss - b.train_loss) for a, b in zip(whole.history, resumed.history))
    epochs = [record.epoch for record in resumed.history]
    # On a CPU the resumed run is bit-identical; GPU kernels that add with atomics are not, so a
    # small difference there is expected and reported.
    passed = epochs == [1, 2] and difference <= (0.0 if settings.device.type == "cpu" else 0.05)
    yield StageResult("resume", passed, f"resumed epochs {epochs}; largest training-loss difference from "
                                        f"the uninterrupted run {difference:.2e}", {"difference": difference})


def check_sync_free(settings: CheckSettings, folder: str):
    """Training steps that never make the CPU wait for the GPU."""
    from labkit.train import SplitTensors, build_training_model, build_training_state, prepare_batch, training_step

    if settings.device.type != "cuda":
        yield StageResult("sync-free steps", None, "skipped: needs CUDA")
        return
    config = settings.smoke_config("unet", folder, "sync", image_size=64, batch_size=8)
    count = config.batch_size * (SYNC_FREE_STEPS + 2)
    state = build_training_state(config, build_training_model(config, settings.device), count)
    train = SplitTensors(torch.randint(0, 256, (count, 3, 64, 64), dtype=torch.uint8, device=settings.device),
                         torch.randint(0, 2, (count, 64, 64), dtype=torch.uint8, device=settings.device))
    batches = torch.arange(count, device=settings.device).split(config.batch_size)
    state.step_model.train()
    for indices in batches[:2]:  # warm-up: allocations and lazy initialisation may synchronise
        training_step(state, *prepare_batch(state, train, indices))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for indices in batches[2:]:
            training_step(state, *prepare_batch(state, train, indices))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    yield StageResult("sync-free steps", True, f"{len(batches) - 2} steps in {state.precision} with no host sync")


def check_speed(settings: CheckSettings, folder: str):
    """Both models: fp32 eager, mixed precision eager and compiled."""
    for model in MODELS:
        rows = []
        for precision, compiled in settings.speed_variants:
            config = speed_config(model, settings.profile, settings.image_size, settings.batch_size, precision,
                                  compiled, settings.device, settings.speed_steps)
            row = speed_of(config, settings.speed_steps)
            rows.append(row)
            detail = (f"{model} {row['precision']} {'compiled' if compiled else 'eager'}: train "
                      f"{row['train_model_only']:.1f} img/s model-only, {row['train_end_to_end']:.1f} end to end "
                      f"({row['end_to_end_share']:.0%}); inference {row['inference']:.1f} img/s")
            share_ok = None if settings.smoke else row["end_to_end_share"] >= TARGETS["end_to_end_share"]
            yield StageResult(f"speed {model}", share_ok, detail, row)
        best = max(row["train_model_only"] for row in rows)
        target = TARGETS["train_images_per_second"][model]
        yield StageResult(f"speed target {model}", None if settings.smoke else best >= target,
                          f"fastest training {best:.1f} img/s (target {target} on one H100/H200)", {"best": best})


def check_quality(settings: CheckSettings, folder: str):
    """Both models trained with the profile's recipe: valid and test Dice, wall time."""
    from labkit.evaluate import evaluate
    from labkit.train import fit

    for model in MODELS:
        if settings.smoke:
            config = settings.smoke_config(model, folder, f"quality_{model}")
        else:
            config = make_config(model, settings.profile, data_root=settings.data_root, device=str(settings.device),
                                 output_dir=folder, run_name=f"quality_{model}")
        started = time.perf_counter()
        result = fit(config, progress=False)
        seconds = time.perf_counter() - started
        scores = {split: evaluate(result.best_checkpoint, split=split, progress=False).metrics["resized"]["dice"]
                  for split in ("valid", "test")}
        passed = None if settings.smoke else (scores["test"] >= TARGETS["test_dice"]
                                              and seconds <= TARGETS["train_seconds"])
        yield StageResult(f"quality {model}", passed,
                          f"valid Dice {scores['valid']:.4f}, test Dice {scores['test']:.4f}, {len(result.history)} epochs "
                          f"in {seconds:.0f} s (best epoch {result.best.epoch})",
                          {"valid_dice": scores["valid"], "test_dice": scores["test"], "train_seconds": seconds,
                           "epochs": len(result.history), "best_epoch": result.best.epoch})


STAGES = {"training": check_training, "resume": check_resume, "sync": check_sync_free, "speed": check_speed,
          "quality": check_quality}


def run_gpu_check(args) -> int:
    """Run the stages asked for (all by default); exit 1 if any failed or missed its target."""
    settings = CheckSettings.make(args.smoke, args.device, args.data_root)
    recorder = Recorder(settings)
    with tempfile.TemporaryDirectory(prefix="labkit-gpu-check-") as folder:
        for stage in args.stages or list(STAGES):
            recorder.run(stage, STAGES[stage], settings, str(Path(folder)))
    print(f"{len(recorder.results)} results, {len(recorder.failed)} failed, "
          f"{time.perf_counter() - recorder.started:.0f} s in all", flush=True)
    return 1 if recorder.failed else 0


def add_gpu_check_parser(kinds) -> None:
    parser = kinds.add_parser("gpu-check", help="prove the GPU path: precisions, resume, no host syncs, speed, quality")
    parser.add_argument("--data-path", dest="data_root", help="dataset for the training stages (default: as train)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, no targets: proves the code paths on a CPU")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), help="run only these stages")
    parser.add_argument("--device", default="auto")
