"""`python -m labkit bench speed`: images per second of training steps and of inference.

Model-only: random tensors already on the device, the trainer's own `training_step`. End to end:
uint8 photos on the device -> augmentation -> normalisation -> forward, backward, optimiser, the
exact `train_one_epoch` that `fit` runs. A row in fp32 on a GPU that computes convolutions in TF32
says so (`tf32`), since that is not the fp32 a CPU computes.
"""

import time
from dataclasses import dataclass

import torch

from labkit.bench.reports import machine, marked_for_malloc, safe_file_name, save_report
from labkit.config import TrainConfig, make_config, resolve_profile
from labkit.device import DTYPES, autocast, memory_format_for, resolve_device, resolve_precision, tf32_in_use
from labkit.models import MODELS, count_parameters
from labkit.timing import images_per_second, synchronize

MODEL_NAMES = tuple(MODELS)
WARMUP_STEPS = 3


@dataclass(frozen=True, kw_only=True)
class SpeedCase:
    """One speed measurement: which model, at which size and batch, in which precision, compiled or
    not, on which device, over how many timed steps."""

    model: str
    profile: str  # the model widths of this profile ("gpu": full size)
    image_size: int = 256
    batch_size: int = 32
    precision: str = "fp32"
    compiled: bool = False
    device: str = "auto"
    steps: int = 10
    inference: bool = True  # also time inference (compiled, that is a second graph to compile)

    def config(self) -> TrainConfig:
        """The configuration the case trains with: the profile's model widths, and enough scheduled
        epochs for every timed step (the learning rate does not change the speed)."""
        return make_config(self.model, self.profile, image_size=self.image_size, batch_size=self.batch_size,
                           precision=self.precision, compile=self.compiled, device=self.device,
                           epochs=10 * (self.steps + WARMUP_STEPS))


def speed_of(case: SpeedCase) -> dict:
    """Model-only and end-to-end train img/s, and inference img/s, for one case. Both training
    measurements run the trainer's own `training_step` on a `TrainingState` built as `fit` builds
    it; end to end adds what `train_one_epoch` does before each step (indexing uint8 photos on the
    device, augmenting, normalising)."""
    from labkit.train import SplitTensors, build_training_model, build_training_state, train_one_epoch, training_step

    config, steps = case.config(), case.steps
    device, image_size, batch_size = resolve_device(config.device), config.image_size, config.batch_size
    photos = batch_size * (steps + WARMUP_STEPS)
    state = build_training_state(config, build_training_model(config, device), photos)
    inputs = torch.randn(batch_size, 3, image_size, image_size, device=device)
    inputs = inputs.contiguous(memory_format=memory_format_for(device))
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
    inference = None
    if case.inference:
        state.step_model.eval()
        inference = images_per_second(inference_step, batch_size, steps, device)
    return {"model": config.model, "parameters": count_parameters(state.model), "precision": state.precision,
            "tf32": tf32_in_use(device, state.precision), "compiled": config.compile,
            "train_model_only": model_only, "train_end_to_end": end_to_end,
            "end_to_end_share": end_to_end / model_only, "inference": inference}


def precision_label(row: dict) -> str:
    """A row's precision as it was computed: "fp32", "fp32 (TF32)", "bf16"..."""
    return f"{row['precision']} (TF32)" if row.get("tf32") else row["precision"]


def format_speed(row: dict) -> str:
    inference = "not timed" if row["inference"] is None else f"{row['inference']:8.1f} img/s"
    return (f"{row['model']:14} {precision_label(row):11} {'compiled' if row['compiled'] else 'eager':8} "
            f"train {row['train_model_only']:8.1f} img/s model-only, {row['train_end_to_end']:8.1f} end-to-end "
            f"({row['end_to_end_share']:.0%}); inference {inference}")


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


def run_speed(*, models: list[str], profile: str, image_size: int, batch_size: int, steps: int,
              precisions: list[str] | None, compiled: bool, device: str) -> None:
    """Measure every model, precision and (with `compiled`) eager and compiled; the report is
    rewritten after each measurement, so a run stopped by a time limit keeps what it measured. It
    records the machine, date and code as they were when the run started.

    Args:
        precisions: default fp32, plus "auto" (bf16 or fp16) on CUDA.
        compiled: also measure each model compiled with torch.compile.
    """
    measured_on = resolve_device(device)
    resolved = [resolve_precision(precision, measured_on)
                for precision in precisions or (["fp32", "auto"] if measured_on.type == "cuda" else ["fp32"])]
    resolved = list(dict.fromkeys(resolved))  # "auto" is fp32 on a CPU: measure it once
    profile = resolve_profile(profile)
    name = speed_report_name(profile, image_size, batch_size, models, resolved, compiled)
    measured = machine(measured_on)  # the machine, date and code as the run starts, not as its last row ends
    rows = []
    for model in models:
        for precision in resolved:
            for compile_it in ([False, True] if compiled else [False]):
                case = SpeedCase(model=model, profile=profile, image_size=image_size, batch_size=batch_size,
                                 precision=precision, compiled=compile_it, device=str(measured_on), steps=steps)
                rows.append(speed_of(case))
                print(format_speed(rows[-1]), flush=True)
                save_report(name, {"machine": measured, "image_size": image_size,
                                   "batch_size": batch_size, "profile": profile, "rows": rows}, measured_on)
