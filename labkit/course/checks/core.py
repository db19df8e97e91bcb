"""How a check reports: one short message per failure, one line when everything passes.

A check is a list of cases run in order. The first case that fails stops the check with a
`CheckFailed` naming the case, what was expected, what came and a hint in words (never a line of
the answer). An exception inside the student's code becomes a one-line `CheckFailed` too, so a
notebook shows neither a bare assertion nor a traceback from inside `labkit`, while the cell
still fails (nbval and graders see the error).

Public cases use seed 0, so a student sees the same case every time; `hidden=True` runs the
further cases a grader adds, with a fresh random seed unless one is given, so their inputs cannot
be known in advance.
"""

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from labkit.course.subjects import ProbeFailed, Subject


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


def case_seed(seed: int | None, hidden: bool) -> int:
    """The seed of a check's random inputs: 0 for the public cases, a fresh one for hidden cases."""
    if seed is not None:
        return seed
    return secrets.randbelow(2**31) if hidden else 0


def short(value: Any) -> str:
    """A value as a check prints it: tensors by shape, dtype and a few numbers."""
    if isinstance(value, Tensor):
        numbers = [round(number, 4) if isinstance(number, float) else number
                   for number in value.detach().flatten()[:6].tolist()]
        more = ", ..." if value.numel() > 6 else ""
        return f"tensor of shape {tuple(value.shape)}, {str(value.dtype).removeprefix('torch.')}: {numbers}{more}"
    return repr(value)


def listed(names, limit: int = 4) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


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

    def probe(self, subject: Subject, kind: str, **params) -> dict:
        """The report of a probe of the student's answer; its errors become one line."""
        try:
            return subject.probe(kind, **params)
        except ProbeFailed as error:
            if error.kind in ("NotYourOwn", "NotAllowed"):
                raise CheckFailed(error.message) from None
            if error.kind == "NotImplementedError":
                raise CheckFailed(f"{self.subject} is not written yet (it raised NotImplementedError {error.during}): "
                                  "replace `raise NotImplementedError()` with your code") from None
            raise CheckFailed(f"your {self.subject} raised {error.kind}: {error.message} {error.during}".rstrip()) from None

    def expect(self, case: str, condition: bool, expected: Any, got: Any, hint: str) -> None:
        if not condition:
            self.fail(case, expected, got, hint)
        self.passed += 1

    def equal(self, case: str, expected: Any, got: Any, hint: str) -> None:
        self.expect(case, got == expected, expected, got, hint)

    def close(self, case: str, expected: Tensor, got: Any, hint: str, atol: float = 1e-5) -> None:
        """`got` is a tensor of `expected`'s shape and dtype kind whose values match within `atol`."""
        if not isinstance(got, Tensor):
            self.fail(case, f"a tensor of shape {tuple(expected.shape)}", f"{type(got).__name__}: {short(got)}", hint)
        if got.shape != expected.shape:
            self.fail(case, f"shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}", hint)
        if expected.dtype == torch.bool:
            wrong = int((got.to(torch.bool) != expected).sum()) if got.dtype == torch.bool else None
            self.expect(case, wrong == 0, f"{int(expected.sum())} True of {expected.numel()}",
                        f"dtype {str(got.dtype).removeprefix('torch.')}" if wrong is None
                        else f"{wrong} of {expected.numel()} values differ", hint)
            return
        difference = (got.detach().double() - expected.detach().double()).abs()
        largest = difference.max().item() if difference.numel() else 0.0
        finite = bool(torch.isfinite(got.detach().double()).all()) if got.numel() else True
        self.expect(case, finite and largest <= atol, expected, f"{short(got)} (largest difference {largest:.3g})", hint)

    def done(self, hidden: bool = False) -> None:
        print(f"All {self.passed} {'further ' if hidden else ''}{self.subject} checks passed.")
