"""Choosing the device and numeric precision, and setting a model up to run fast there, the same
way for training, evaluation and inference.

Precisions are named ("fp32", "bf16", "fp16") everywhere, and a run stores the name it resolved
to, so a checkpoint says how it was trained whatever "auto" meant on that machine. On CUDA a model
runs channels_last (as its inputs do) with cuDNN's fastest algorithms for its fixed input size;
`host_syncs_forbidden` lets a check prove that a training step never makes the CPU wait for the GPU.
"""

import contextlib
import contextvars
import platform
import warnings
from datetime import datetime, timezone

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30xx) and later compute bf16 in hardware
TF32_CAPABILITY = (8, 0)  # the same GPUs compute "fp32" convolutions in TF32 unless told not to


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else Apple's MPS, else the CPU.

    Raises:
        ValueError: a device was named that this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto")
    return device


def describe_device(device: torch.device) -> str:
    """The device in words, as timings are labelled: the GPU's name, or the CPU and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: " + (platform.processor() or platform.machine()) + f", {torch.get_num_threads()} threads"


def timing_label(device: torch.device) -> dict[str, str]:
    """When and where a timing is taken: today's UTC date and `describe_device`. Times compare only
    within one such label, as the same machine runs at another speed on another day."""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "device": describe_device(device)}


def has_native_bf16(device: torch.device) -> bool:
    """True on GPUs that compute bf16 in hardware. `torch.cuda.is_bf16_supported()` also says yes
    on a T4 or V100, where bf16 is emulated and slower than fp32, so ask for the compute capability."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses on `device`: "auto" is bf16 on GPUs with native bf16, fp16 (with
    loss scaling) on older GPUs, and fp32 on CPUs and Apple GPUs.

    Raises:
        ValueError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if has_native_bf16(device) else "fp16"
    if precision == "bf16" and device.type == "cuda" and not has_native_bf16(device):
        warnings.warn(f"{torch.cuda.get_device_name(device)} has no native bf16: it runs emulated and slowly; "
                      "precision 'auto' would use fp16 with loss scaling", stacklevel=2)
    return precision


CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def memory_format_for(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA, where tensor cores want it, and on the CPU, whose oneDNN convolutions
    ran the lab's models faster that way (measured on the project's 2-core machine, model and
    input both channels_last: training 18-24 % and inference 18-33 % more images a second;
    docs/benchmarks.md); contiguous elsewhere (MPS)."""
    return torch.channels_last if device.type in CHANNELS_LAST_DEVICES else torch.contiguous_format


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """The layout `model`'s convolutions are stored in (that of its first 4-D weight), which its
    inputs should share: a channels_last input to a contiguous model, or the other way round, is
    converted at every layer."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            stored_channels_last = (parameter.is_contiguous(memory_format=torch.channels_last)
                                    and not parameter.is_contiguous())
            return torch.channels_last if stored_channels_last else torch.contiguous_format
    return torch.contiguous_format


def tune_backend(device: torch.device) -> None:
    """On CUDA let cuDNN time its algorithms for each input size once and keep the fastest
    (`cudnn.benchmark`): training and evaluation feed one size of image, so the timing pays off
    from the second batch on. A process-wide setting, made when a model is placed on a GPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` on `device` in that device's memory format (in place, and returned), with the
    backend tuned for it (`tune_backend`): what training, evaluation and prediction run, so a model
    and its inputs never differ in layout."""
    tune_backend(device)
    return model.to(device=device, memory_format=memory_format_for(device))


def tf32_in_use(device: torch.device, precision: str) -> bool:
    """Whether "fp32" convolutions on `device` are computed in TF32 (a 10-bit mantissa): PyTorch's
    default on GPUs of compute capability 8.0 and up, so a speed measured there in "fp32" is not
    the fp32 of a CPU or an older GPU."""
    return (precision == "fp32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32
            and torch.cuda.get_device_capability(device) >= TF32_CAPABILITY)


def autocast(device: torch.device, precision: str):
    """A mixed-precision context for a resolved precision, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active only for fp16, whose small range lets tiny gradients vanish."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


# Set by `host_syncs_forbidden`: how many sync-free regions to let pass as warm-up, and how many have.
FORBIDDING_HOST_SYNCS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("labkit_host_syncs", default=None)


@contextlib.contextmanager
def host_syncs_forbidden(warm_up: int = 1):
    """Within the block, every `sync_free_region` on CUDA after the first `warm_up` ones runs under
    `torch.cuda.set_sync_debug_mode("error")`: an operation that makes the CPU wait for the GPU
    (`.item()`, a copy to ordinary memory, `nonzero`...) raises instead of stalling the queue. The
    warm-up regions allocate memory and choose cuDNN algorithms, which may wait.

    Yields:
        a dict whose "checked" counts the regions run under the check.
    """
    counts = {"warm_up": warm_up, "entered": 0, "checked": 0}
    token = FORBIDDING_HOST_SYNCS.set(counts)
    try:
        yield counts
    finally:
        FORBIDDING_HOST_SYNCS.reset(token)


@contextlib.contextmanager
def sync_free_region(device: torch.device):
    """Marks code that must never make the CPU wait for `device` (the steps of a training epoch,
    progress bar included). Free of cost unless inside `host_syncs_forbidden`, on CUDA."""
    counts = FORBIDDING_HOST_SYNCS.get()
    if counts is None or device.type != "cuda":
        yield
        return
    counts["entered"] += 1
    if counts["entered"] <= counts["warm_up"]:
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    counts["checked"] += 1
