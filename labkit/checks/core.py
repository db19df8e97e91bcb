"""How a check reports: one short message per failure, one line when everything passes.

A check is a list of cases run in order. The first case that fails stops the check with a
`CheckFailed` naming the case, what was expected, what came and a hint. An exception raised
inside the student's code becomes a one-line `CheckFailed` too, so a notebook shows neither a
bare assertion nor a traceback from inside `labkit`, while the cell still fails (nbval and the
grader see the error).
"""

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn


class CheckFailed(Exception):
    """A failed exercise check; IPython shows only its message, not a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.__suppress_context__ = True

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting a traceback (see IPython's InteractiveShell).
        return [f"CheckFailed: {line}" if index == 0 else line for index, line in enumerate(str(self).splitlines())]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one CPU thread: the checks' tensors are tiny, and on a busy machine several threads
    spend far longer waiting for each other (seconds) than computing (milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check(function: Callable) -> Callable:
    """Decorator for a public check: it runs on one thread and returns None."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> None:
        with one_thread():
            function(*args, **kwargs)

    return wrapper


def short(value: Any) -> str:
    """A value as a check prints it: tensors by shape, dtype and a few numbers."""
    if isinstance(value, Tensor):
        numbers = value.detach().flatten()[:6].tolist()
        more = ", ..." if value.numel() > 6 else ""
        return f"tensor of shape {tuple(value.shape)}, {str(value.dtype).removeprefix('torch.')}: {numbers}{more}"
    return repr(value)


class Checker:
    """Runs the cases of one check and counts them.

    Args:
        subject: what the student wrote, as the messages name it ("DoubleConv", "dice_per_image").
    """

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.passed = 0

    def fail(self, case: str, expected: Any, got: Any, hint: str) -> None:
        raise CheckFailed(
            f"{self.subject} failed the case: {case}\n"
            f"  expected: {expected if isinstance(expected, str) else short(expected)}\n"
            f"  got:      {got if isinstance(got, str) else short(got)}\n"
            f"  hint: {hint}"
        )

    def call(self, what: str, function: Callable, *args, **kwargs) -> Any:
        """`function(*args, **kwargs)`, turning an exception inside it into one line naming `what`."""
        try:
            return function(*args, **kwargs)
        except CheckFailed:
            raise
        except NotImplementedError:
            raise CheckFailed(f"{self.subject} is not written yet (it raised NotImplementedError {what}): "
                              "replace `raise NotImplementedError()` with your code") from None
        except Exception as error:  # the student's bug, reported in one line
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckFailed(f"your {self.subject} raised {type(error).__name__}: {message} {what}") from None

    def expect(self, case: str, condition: bool, expected: Any, got: Any, hint: str) -> None:
        if not condition:
            self.fail(case, expected, got, hint)
        self.passed += 1

    def equal(self, case: str, expected: Any, got: Any, hint: str) -> None:
        self.expect(case, got == expected, expected, got, hint)

    def close(self, case: str, expected: Tensor, got: Any, hint: str, atol: float = 1e-5) -> None:
        """`got` is a tensor of `expected`'s shape whose values match it within `atol`."""
        if not isinstance(got, Tensor):
            self.fail(case, f"a tensor of shape {tuple(expected.shape)}", f"{type(got).__name__}: {short(got)}", hint)
        if got.shape != expected.shape:
            self.fail(case, f"shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}", hint)
        difference = (got.detach().float() - expected.detach().float()).abs().max().item() if got.numel() else 0.0
        self.expect(case, difference <= atol, expected, f"{short(got)} (largest difference {difference:.3g})", hint)

    def done(self) -> None:
        print(f"All {self.passed} {self.subject} checks passed.")


def randomize_batch_norm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine weights, so that in eval
    mode it is not the identity and a missing or misplaced BatchNorm changes the output."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            with torch.no_grad():
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                layer.weight.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)


def tensor_shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(tensor.shape)) for name, tensor in module.state_dict().items()]


def copy_weights(checker: Checker, reference: nn.Module, student: nn.Module, built: str) -> None:
    """Load the reference's weights into the student's module: by name when the names match, else
    in registration order when the shapes line up (the check tests behaviour, not names)."""
    theirs, ours = tensor_shapes(reference), tensor_shapes(student)
    if [name for name, _ in theirs] == [name for name, _ in ours]:
        checker.call(f"loading the reference weights into {built}", student.load_state_dict, reference.state_dict())
        return
    checker.expect(
        f"{built} holds the same weight and buffer tensors as the reference",
        [shape for _, shape in theirs] == [shape for _, shape in ours],
        f"{len(theirs)} tensors: " + ", ".join(f"{name} {shape}" for name, shape in theirs[:8]) + (" ..." if len(theirs) > 8 else ""),
        f"{len(ours)} tensors: " + ", ".join(f"{name} {shape}" for name, shape in ours[:8]) + (" ..." if len(ours) > 8 else ""),
        "build the layers in the order the exercise lists them, with the sizes it gives",
    )
    with torch.no_grad():
        for (_, source), (_, target) in zip(reference.state_dict().items(), student.state_dict().items()):
            target.copy_(source)


def same_weights_pair(checker: Checker, reference: nn.Module, student: nn.Module, built: str,
                      generator: torch.Generator) -> tuple[nn.Module, nn.Module]:
    """Reference (with randomized BatchNorm) and the student's module holding its weights, both in eval mode."""
    reference = copy.deepcopy(reference)
    randomize_batch_norm(reference, generator)
    copy_weights(checker, reference, student, built)
    return reference.eval(), student.eval()


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def check_module_output(checker: Checker, reference: nn.Module, student: nn.Module, built: str, inputs: tuple,
                        described: str, hint: str, generator: torch.Generator) -> Any:
    """Same weights, same inputs, eval mode: the student's output equals the reference's."""
    reference, student = same_weights_pair(checker, reference, student, built, generator)
    with torch.no_grad():
        expected = reference(*inputs)
        got = checker.call(f"on input {described}", student, *inputs)
    if isinstance(expected, tuple):
        checker.expect(f"{built} returns {len(expected)} tensors", isinstance(got, (tuple, list)) and len(got) == len(expected),
                       f"a tuple of {len(expected)} tensors", short(got) if not isinstance(got, (tuple, list)) else f"{len(got)} items", hint)
        for index, (one_expected, one_got) in enumerate(zip(expected, got)):
            checker.close(f"output {index + 1} of {built} on input {described}, same weights as the reference",
                          one_expected, one_got, hint, atol=1e-4)
    else:
        checker.close(f"output of {built} on input {described}, same weights as the reference", expected, got, hint, atol=1e-4)
    return got


def check_gradients(checker: Checker, module: nn.Module, built: str, inputs: tuple, hint: str) -> None:
    """One backward pass through the student's module in train mode reaches every parameter."""
    module.train()
    output = checker.call(f"on input {tuple(inputs[0].shape)} in train mode", module, *inputs)
    outputs = output if isinstance(output, (tuple, list)) else (output,)
    checker.call("in backward()", lambda: sum(out.float().square().mean() for out in outputs).backward())
    missing = [name for name, parameter in module.named_parameters()
               if parameter.requires_grad and (parameter.grad is None or not parameter.grad.abs().sum() > 0)]
    checker.expect(f"a backward pass through {built} reaches every parameter", not missing,
                   "a gradient in every parameter", f"no gradient in {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""),
                   hint)
