"""The student's answer as a check sees it: something to probe, here or in another process.

`LocalSubject` probes an object of this process (a notebook's own check cell, nbgrader, the
tests). Before it is probed, the answer must be the student's: not labkit's object, an alias or a
subclass of it, and its cell must pass `labkit.course.screen`. While it is probed, the earlier
exercises it builds on are labkit's own, so one mistake costs one exercise.

`RemoteSubject` asks a runner process that holds the student's answer (`labkit.course.runner`)
and only reads back data; `labkit grade` decides grades that way.
"""

import contextlib
import inspect
import linecache
import types
from collections.abc import Iterator

from labkit.course import probes
from labkit.course.exercises import Exercise, exercise_defining, reference
from labkit.course.screen import ALWAYS_RESERVED, AnswerRefused, Rules, screen
from labkit.course.wire import from_plain


class ProbeFailed(Exception):
    """The student's code raised during a probe, or could not be probed at all."""

    def __init__(self, during: str, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message} ({during})" if during else f"{kind}: {message}")
        self.during, self.kind, self.message = during, kind, message


class Subject:
    """What a check probes: `probe(kind, **params)` returns the report of `labkit.course.probes.<kind>`."""

    name: str

    def probe(self, kind: str, **params) -> dict:
        raise NotImplementedError


class LocalSubject(Subject):
    """An object of this process.

    Args:
        obj: the student's function or class (or labkit's, for a reference).
        name: the name the exercise gives it ("UNet").
        exercise: its exercise: the integrity rules and the earlier exercises put beneath it.
            None for a reference, which is probed as it is.
    """

    def __init__(self, obj, name: str, exercise: Exercise | None = None) -> None:
        self.obj, self.name, self.exercise = obj, name, exercise
        self.own = exercise is None  # a reference needs no proof; an answer is proven at its first probe

    def probe(self, kind: str, **params) -> dict:
        if not self.own:
            refuse_if_not_own(self.obj, self.name, self.exercise)
            self.own = True
        with self.beneath():
            try:
                return from_plain(probes.run_probe(kind, self.obj, params))
            except probes.StudentRaised as error:
                raise ProbeFailed(error.during, error.kind, error.message) from None

    @contextlib.contextmanager
    def beneath(self) -> Iterator[None]:
        """labkit's versions of the earlier exercises in the student's namespace while probing."""
        namespace = defining_namespace(self.obj)
        if self.exercise is None or namespace is None or not self.exercise.beneath:
            yield
            return
        saved = {name: namespace[name] for name in self.exercise.beneath if name in namespace}
        namespace.update({name: reference(path) for name, path in self.exercise.beneath.items()})
        try:
            yield
        finally:
            for name in self.exercise.beneath:
                namespace.pop(name, None)
            namespace.update(saved)


class RemoteSubject(Subject):
    """A name in a runner process (`labkit.course.judge.Runner`); probes travel as data."""

    def __init__(self, runner, name: str) -> None:
        self.runner, self.name = runner, name

    def probe(self, kind: str, **params) -> dict:
        reply = self.runner.request({"probe": kind, "name": self.name, "params": params})
        if "error" in reply:
            error = reply["error"]
            raise ProbeFailed(error.get("during", ""), error.get("kind", "Error"), error.get("message", ""))
        return reply["report"]


def as_subject(obj, name: str) -> Subject:
    """The student's `obj` as a subject of the exercise that defines `name`."""
    if isinstance(obj, Subject):
        return obj
    return LocalSubject(obj, name, exercise_defining(name))


def reference_subject(obj, name: str) -> LocalSubject:
    return LocalSubject(obj, name)


# --- is it the student's own? ------------------------------------------------------------------------------------

def functions_of(obj) -> list[types.FunctionType]:
    """The plain functions that make up `obj`: itself, or the methods a class defines itself."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, type):
        return [member for member in vars(obj).values() if isinstance(member, types.FunctionType)]
    return []


def defining_namespace(obj) -> dict | None:
    """The global namespace `obj` was defined in (a notebook's), or None."""
    functions = functions_of(obj)
    return functions[0].__globals__ if functions else None


def labkit_origin(obj) -> str | None:
    """Where in labkit `obj`, or a class it derives from, comes from; None if nowhere."""
    candidates = inspect.getmro(obj) if isinstance(obj, type) else (obj,)
    for candidate in candidates:
        module = getattr(candidate, "__module__", "") or ""
        if module == "labkit" or module.startswith("labkit."):
            return f"{module}.{getattr(candidate, '__qualname__', type(candidate).__name__)}"
    return None


def refuse_if_not_own(obj, name: str, exercise: Exercise) -> None:
    """Refuse labkit's own object, an alias or subclass of it, anything not defined by `def` or
    `class` in a notebook cell, and a cell the screen refuses.

    Raises:
        ProbeFailed: one line saying what was used.
    """
    origin = labkit_origin(obj)
    if origin is not None:
        relation = "is" if getattr(obj, "__module__", "").startswith("labkit") else "is built on"
        raise ProbeFailed("", "NotYourOwn", f"your {name} {relation} labkit's own {origin}: the answer must be "
                                            "your code, so it earns nothing")
    functions = functions_of(obj)
    if not functions:
        raise ProbeFailed("", "NotYourOwn", f"your {name} is a {type(obj).__name__}, not a function or class "
                                            f"defined with def or class in its answer cell")
    source = "".join(linecache.getlines(functions[0].__code__.co_filename))
    if not source:
        raise ProbeFailed("", "NotYourOwn", f"the cell that defines {name} cannot be found: define it with def or "
                                            "class in its answer cell and run that cell")
    namespace = functions[0].__globals__
    notebook = {key for key, value in namespace.items() if isinstance(value, types.ModuleType)}
    try:
        screen(source, Rules.for_exercise(exercise, notebook | set(exercise.allowed) | ALWAYS_RESERVED))
    except AnswerRefused as error:
        raise ProbeFailed("", "NotAllowed", f"your {name} cannot earn points: its cell {error}") from None
