"""Choosing the device and numeric precision, the same way for training, evaluation and inference.

Precisions are named ("fp32", "bf16", "fp16") everywhere, and a run stores the name it resolved
to, so a checkpoint says how it was trained whatever "auto" meant on that machine.
"""

import contextlib
import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30xx) and later compute bf16 in hardware


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


def autocast(device: torch.device, precision: str):
    """A mixed-precision context for a resolved precision, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active only for fp16, whose small range lets tiny gradients vanish."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
