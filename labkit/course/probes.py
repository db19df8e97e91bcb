"""What a check asks of a student's function or class, as plain operations that return plain data.

A check never holds the student's object itself: it asks for a probe (build it with these
arguments, load these weights, run it on these inputs, report shapes, outputs and gradients) and
compares the report with the same probe of labkit's reference. In a notebook the probe runs in
the notebook's own process (`labkit.course.subjects.LocalSubject`); when `labkit grade` grades,
it runs in the student's runner process and only the report comes back
(`labkit.course.subjects.RemoteSubject`), so the comparison happens where no student code ever ran.

Every probe takes the student's object first and returns a dict of tensors, arrays and plain
values. An exception inside the student's code becomes `StudentRaised`, naming what was being done.
"""

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from labkit.course.wire import WireError, to_plain


class StudentRaised(Exception):
    """The student's code raised (or returned something that is not data) while `during`."""

    def __init__(self, during: str, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message} ({during})")
        self.during, self.kind, self.message = during, kind, message

    def to_dict(self) -> dict:
        return {"during": self.during, "kind": self.kind, "message": self.message}


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def student(during: str, function: Callable, *args, **kwargs):
    """`function(*args, **kwargs)`: the student's code, any exception it raises named by `during`."""
    try:
        return function(*args, **kwargs)
    except StudentRaised:
        raise
    except Exception as error:  # whatever the student's code raises is reported, not propagated
        raise StudentRaised(during, type(error).__name__, first_line(error)) from None


def plain(value, during: str):
    """A result as data (tensors detached, on the CPU), or StudentRaised naming what came instead."""
    if isinstance(value, Tensor) and type(value) is not Tensor and not isinstance(value, nn.Parameter):
        raise StudentRaised(during, "TypeError", f"returned a {type(value).__name__}, not a plain torch.Tensor")
    try:
        return to_plain(value)
    except WireError as error:
        raise StudentRaised(during, "TypeError", str(error)) from None


def described(args: tuple, kwargs: dict) -> str:
    return ", ".join([*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())])


def randomize_batch_norm(module: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine weights in every BatchNorm, so that in eval mode
    none is the identity and a missing or misplaced one changes the output."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                if layer.affine:
                    layer.weight.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                    layer.bias.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)


def parameter_statistics(module: nn.Module) -> dict:
    """numel, mean and standard deviation of every parameter, as built."""
    return {name: (parameter.numel(), parameter.detach().float().mean().item(),
                   parameter.detach().float().std().item() if parameter.numel() > 1 else 0.0)
            for name, parameter in module.named_parameters()}


def module_report(factory: Callable, args: tuple = (), kwargs: dict | None = None, *, seed: int = 0,
                  weights: dict | None = None, inputs: tuple | None = None, train: bool = False,
                  gradient_inputs: tuple | None = None, statistics: bool = False,
                  randomize: int | None = None, return_weights: bool = False) -> dict:
    """Build `factory(*args, **kwargs)` and report on it.

    Args:
        seed: torch's seed while it is built (its initial weights).
        weights: load these (by name, strictly) before running it.
        inputs: run it once on these, in train mode if `train`, else eval mode, without gradients.
        gradient_inputs: then, in train mode, backpropagate the mean square of its outputs on these
            and name the parameters that got no gradient.
        statistics: report each parameter's numel, mean and std as built.
        randomize: randomize its BatchNorm statistics with this seed (for a reference).
        return_weights: report its state dict (after `randomize`).
    """
    kwargs = kwargs or {}
    call = f"when built as {getattr(factory, '__name__', 'it')}({described(args, kwargs)})"
    torch.manual_seed(seed)
    module = student(call, factory, *args, **kwargs)
    report = {"is_module": isinstance(module, nn.Module), "type": type(module).__name__}
    if not report["is_module"]:
        return report
    report["shapes"] = {name: tuple(tensor.shape) for name, tensor in student(call, module.state_dict).items()}
    report["parameters"] = sum(parameter.numel() for parameter in module.parameters())
    report["length"] = len(module) if isinstance(module, (nn.Sequential, nn.ModuleList)) else None
    if statistics:
        report["statistics"] = parameter_statistics(module)
    if randomize is not None:
        randomize_batch_norm(module, randomize)
    if return_weights:
        report["weights"] = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    if weights is not None:
        mismatch = load_mismatch(module, weights)
        if mismatch:
            report["load_error"] = mismatch
            return report
        student(f"{call}, loading weights", module.load_state_dict, weights)
    if inputs is not None:
        student(f"{call}, switching to {'train' if train else 'eval'} mode", module.train, train)
        with torch.no_grad():
            output = student(f"{call}, on inputs of shape {[tuple(x.shape) for x in inputs]}", module, *inputs)
        report["outputs"] = plain(output, call)
    if gradient_inputs is not None:
        report["without_gradient"] = parameters_without_gradient(module, gradient_inputs, call)
    return report


def load_mismatch(module: nn.Module, weights: dict) -> dict:
    """The names missing from, extra in, or of another shape in `module` compared with `weights`."""
    own = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    given = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    mismatch = {"missing": sorted(set(given) - set(own)), "unexpected": sorted(set(own) - set(given)),
                "shapes": sorted(name for name in set(own) & set(given) if own[name] != given[name])}
    return mismatch if any(mismatch.values()) else {}


def parameters_without_gradient(module: nn.Module, inputs: tuple, call: str) -> list[str]:
    module.train()
    for parameter in module.parameters():
        parameter.grad = None
    output = student(f"{call}, in train mode on inputs of shape {[tuple(x.shape) for x in inputs]}", module, *inputs)
    outputs = output if isinstance(output, (tuple, list)) else (output,)
    if not all(isinstance(item, Tensor) for item in outputs):
        raise StudentRaised(call, "TypeError", "its forward returned something that is not a tensor")
    student(f"{call}, in backward()", lambda: sum(item.float().square().mean() for item in outputs).backward())
    return [name for name, parameter in module.named_parameters()
            if parameter.requires_grad and (parameter.grad is None or not bool(parameter.grad.abs().sum() > 0))]


def function_report(function: Callable, args: tuple = (), kwargs: dict | None = None, *,
                    gradient_of: int | None = None, return_arguments: bool = False) -> dict:
    """Call `function(*args, **kwargs)` and report what it returned.

    Args:
        gradient_of: make argument `gradient_of` require a gradient and, when the result is a
            scalar tensor, backpropagate it and report that argument's gradient.
        return_arguments: report the arguments as they are after the call (to see in-place changes).
    """
    kwargs = kwargs or {}
    args = list(args)
    if gradient_of is not None:
        args[gradient_of] = args[gradient_of].detach().clone().requires_grad_(True)
    name = getattr(function, "__name__", "it")
    call = f"when called as {name}({', '.join(describe_argument(arg) for arg in args)}"
    call += "".join(f", {key}={value!r}" for key, value in kwargs.items()) + ")"
    result = student(call, function, *args, **kwargs)
    report = {"requires_grad": bool(getattr(result, "requires_grad", False)),
              "has_grad_fn": getattr(result, "grad_fn", None) is not None, "type": type(result).__name__}
    if gradient_of is not None and isinstance(result, Tensor) and result.dim() == 0 and result.requires_grad:
        student(f"{call}, in backward()", result.backward)
        gradient = args[gradient_of].grad
        report["gradient"] = None if gradient is None else gradient.detach().clone()
    report["result"] = plain(result, call)
    if return_arguments:
        report["arguments"] = plain(tuple(args), call)
    return report


def describe_argument(value) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return repr(value)


class CountingWrapper(nn.Module):
    """Stands in for the compiled or distributed model a training state calls (`step_model`):
    it runs the model and counts the calls, so a step that used `state.model` instead shows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, *inputs):
        self.calls += 1
        return self.model(*inputs)


def tiny_state(seed: int):
    """A small, fully seeded training state: UNet(base_width=4), AdamW, a 10-step one-cycle schedule,
    labkit's loss, fp32 on the CPU; `step_model` wraps the model (see CountingWrapper)."""
    from labkit.augment import AugmentConfig
    from labkit.device import grad_scaler
    from labkit.losses import SegmentationLoss
    from labkit.models import UNet
    from labkit.train import TrainingState

    torch.manual_seed(seed)
    model = UNet(base_width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return TrainingState(
        model=model, step_model=CountingWrapper(model), loss_fn=SegmentationLoss(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=10),
        scaler=grad_scaler(torch.device("cpu"), "fp32"), generator=torch.Generator().manual_seed(seed),
        augment=AugmentConfig(), device=torch.device("cpu"), precision="fp32",
    )


def weights_of(state) -> dict:
    return {name: tensor.detach().clone() for name, tensor in state.model.state_dict().items()}


def training_step_report(step: Callable, seed: int = 0, steps: int = 2, batch_size: int = 2, size: int = 32) -> dict:
    """`step(state, images, masks)` on a tiny state, `steps` times: what each call returned, the
    weights and the schedule's position after each, and how often `state.step_model` ran."""
    state, generator = tiny_state(seed), torch.Generator().manual_seed(seed + 1)
    rows = []
    for number in range(1, steps + 1):
        images = torch.randn(batch_size, 3, size, size, generator=generator)
        masks = (torch.rand(batch_size, size, size, generator=generator) > 0.5).to(torch.uint8)
        calls_before = state.step_model.calls
        loss = student(f"at step {number}", step, state, images, masks)
        rows.append({"loss": plain(loss, f"at step {number}"), "type": type(loss).__name__,
                     "requires_grad": bool(getattr(loss, "requires_grad", False)),
                     "has_grad_fn": getattr(loss, "grad_fn", None) is not None,
                     "weights": weights_of(state), "schedule": state.scheduler.last_epoch,
                     "step_model_calls": state.step_model.calls - calls_before})
    return {"steps": rows}


def epoch_report(epoch: Callable, seed: int = 0, photos: int = 6, batch_size: int = 2, size: int = 32) -> dict:
    """`epoch(state, split, batch_size)` on a tiny state left in eval mode (as validation leaves it)."""
    from labkit.train import SplitTensors

    state, generator = tiny_state(seed), torch.Generator().manual_seed(seed + 1)
    split = SplitTensors(torch.randint(0, 256, (photos, 3, size, size), dtype=torch.uint8, generator=generator),
                         (torch.rand(photos, size, size, generator=generator) > 0.5).to(torch.uint8))
    state.step_model.eval()
    during = f"on {photos} photos in batches of {batch_size}"
    result = student(during, epoch, state, split, batch_size)
    return {"result": plain(result, during), "type": type(result).__name__, "weights": weights_of(state),
            "step_model_training": state.step_model.training, "step_model_calls": state.step_model.calls,
            "schedule": state.scheduler.last_epoch}


PROBES: dict[str, Callable] = {probe.__name__: probe for probe in (module_report, function_report,
                                                                   training_step_report, epoch_report)}


def run_probe(kind: str, subject, params: dict) -> dict:
    """One probe by name, on a copy of the parameters (a probe must not change the caller's tensors)."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}")
    return PROBES[kind](subject, **copy.deepcopy(params))
