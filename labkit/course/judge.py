"""The grade of each check cell, decided in a process no student code runs in.

For every check cell of a master that calls labkit's checks, the judge

1. screens the student's answer cell (`labkit.course.screen`): an answer that uses what its
   exercise does not allow scores 0, with the reason;
2. has a runner process (`labkit.course.runner`) prepare the answer: the master's code beneath it,
   then the answer with only its allowed names;
3. runs the check cell's own calls, public and hidden, here, with each name the answer defines
   standing for the runner's object (`RemoteSubject`): the checks compare what the runner reports
   with labkit's reference, computed here on inputs the runner cannot know in advance.

Whatever an answer does to its own process (rebinding `checks`, patching labkit or torch, hooking
IPython) therefore cannot change a grade. A runner that hangs or dies fails the check it was on,
with the reason, and a fresh one serves the next.
"""

import contextlib
import io
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from labkit.course import checks, wire
from labkit.course.checks import CheckFailed
from labkit.course.exercises import BY_CHECK, Exercise
from labkit.course.masters import (
    CheckCall, SOLUTION, check_calls, definition_only, is_answer, is_check, is_solution, nbgrader, student_stub,
    without_markers,
)
from labkit.course.screen import AnswerRefused, Rules, notebook_names, screen
from labkit.course.subjects import RemoteSubject

PROBE_SECONDS = 120  # one probe or preparation; a check makes a few dozen, each well under a second
STARTUP_SECONDS = 60  # more for a fresh runner's first request: Python, torch and the notebook's imports
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "HOME", "TMPDIR", "SYSTEMROOT", "LABKIT_GRADE_MARK")


class RunnerFailed(Exception):
    """The runner hung or died; the message says which, and while doing what."""


@dataclass
class CheckResult:
    """The judge's verdict on one check cell."""

    grade_id: str
    passed: bool | None  # None: not judged here (a lecturer's own check cell: the notebook run grades it)
    detail: str = ""  # why it failed, in one line or a check's message
    output: str = field(default="", repr=False)  # what the checks printed


def runner_environment() -> dict[str, str]:
    """What a runner inherits: enough to run Python, nothing of the grader's own settings."""
    environment = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    environment.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return environment


class Runner:
    """One runner process and the two pipes to it."""

    def __init__(self, timeout: float = PROBE_SECONDS) -> None:
        self.timeout = timeout
        self.answered = False  # its first request also waits for its start (STARTUP_SECONDS)
        request_read, self.request_write = os.pipe()
        self.response_read, response_write = os.pipe()
        self.log = tempfile.TemporaryFile()
        self.folder = Path(tempfile.mkdtemp(prefix="labkit-runner-"))  # its working folder, removed by close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labkit.course.runner", str(request_read), str(response_write)],
            pass_fds=(request_read, response_write), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=runner_environment(), cwd=self.folder, start_new_session=True,
        )
        os.close(request_read)
        os.close(response_write)

    def request(self, message: dict) -> dict:
        """Send one request and wait at most `timeout` seconds for its reply."""
        what = f"probing {message['name']}" if "probe" in message else "running the answer cell"
        try:
            wire.send(self.request_write, message)
            (length,) = struct.unpack(">Q", self.read(8, what))
            if length > wire.MAX_MESSAGE:
                raise RunnerFailed(f"the answer's process sent a message of {length} bytes while {what}")
            reply = wire.decode(self.read(length, what))
            self.answered = True
            return reply
        except (BrokenPipeError, wire.WireError):
            self.close()
            raise RunnerFailed(f"the answer's process died while {what}{self.exit_reason()}") from None

    def read(self, count: int, what: str) -> bytes:
        chunks, left = [], count
        limit = self.timeout + (0 if self.answered else STARTUP_SECONDS)
        while left:
            ready, _, _ = select.select([self.response_read], [], [], limit)
            if not ready:
                self.close()
                raise RunnerFailed(f"the answer ran for more than {self.timeout:g} s while {what} and was stopped")
            chunk = os.read(self.response_read, min(left, 1 << 20))
            if not chunk:
                raise wire.WireError("closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def exit_reason(self) -> str:
        code = self.process.poll()
        if code is None:
            return ""
        if code < 0:
            return f" (killed by signal {signal.Signals(-code).name})"
        return f" (exit code {code})"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                wire.send(self.request_write, {"quit": True})
                self.process.wait(timeout=2)
            except (OSError, wire.WireError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for fd in (self.request_write, self.response_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def preparation(master: NotebookNode, check_index: int, exercise: Exercise, answer: str) -> dict:
    """What a runner needs for one check: the master's definition cells and labkit's (the
    master's) versions of earlier answers before the check cell, in order; the student's answer."""
    context = []
    for cell in master.cells[:check_index]:
        if cell.cell_type != "code":
            continue
        if is_solution(cell):
            if nbgrader(cell)["grade_id"] != exercise.answer and is_answer(cell):
                context.append(without_markers(cell.source, SOLUTION))
        elif not is_check(cell) and definition_only(cell.source):
            context.append(cell.source)
    return {"context": context, "answer": answer, "allowed": list(exercise.allowed),
            "members": {module: list(members) for module, members in exercise.members.items()},
            "defines": list(exercise.defines)}


def run_calls(calls: list[CheckCall], names: dict) -> str:
    """Run a check cell's calls with `names` standing for the student's objects; returns what they printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for call in calls:
            getattr(checks, call.function)(*(names[name] for name in call.names), **call.keywords)
    return printed.getvalue()


class RunnerSlot:
    """One runner at a time for one student's notebooks: started when first needed, replaced when
    it hung or died, closed at the end."""

    def __init__(self, timeout: float = PROBE_SECONDS) -> None:
        self.timeout = timeout
        self.runner: Runner | None = None

    def get(self) -> Runner:
        if self.runner is not None and not self.runner.alive:
            self.runner.close()  # its pipes, log and folder
            self.runner = None
        if self.runner is None:
            self.runner = Runner(self.timeout)
        return self.runner

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def __enter__(self) -> "RunnerSlot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Judge:
    """Judges one student's notebook against its master."""

    def __init__(self, master: NotebookNode, answers: dict[str, str], runners: RunnerSlot) -> None:
        self.master, self.answers, self.runners = master, answers, runners
        self.names = notebook_names(cell.source for cell in master.cells
                                    if cell.cell_type == "code" and not is_solution(cell))

    def answer_of(self, exercise: Exercise) -> str:
        if exercise.answer in self.answers:
            return self.answers[exercise.answer]
        cell = next(cell for cell in self.master.cells if nbgrader(cell).get("grade_id") == exercise.answer)
        return student_stub(cell)

    def judge_cell(self, index: int) -> CheckResult:
        cell = self.master.cells[index]
        grade_id = nbgrader(cell)["grade_id"]
        calls, exercise = check_calls(cell.source), BY_CHECK.get(grade_id)
        if calls is None or exercise is None or any(name not in exercise.defines for call in calls for name in call.names):
            return CheckResult(grade_id, None, "graded by running the notebook")
        answer = self.answer_of(exercise)
        try:
            screen(answer, Rules.for_exercise(exercise, self.names))
        except AnswerRefused as error:
            return CheckResult(grade_id, False, f"{' and '.join(exercise.defines)} cannot earn points: its cell {error}")
        try:
            runner = self.runners.get()
            reply = runner.request({"prepare": preparation(self.master, index, exercise, answer)})
            if "error" in reply:
                error = reply["error"]
                return CheckResult(grade_id, False, f"{error['kind']}: {error['message']} {error['during']}".strip())
            subjects = {name: RemoteSubject(runner, name) for name in exercise.defines}
            return CheckResult(grade_id, True, "", run_calls(calls, subjects))
        except CheckFailed as failure:
            return CheckResult(grade_id, False, str(failure))
        except RunnerFailed as failure:
            return CheckResult(grade_id, False, str(failure))

    def judge(self) -> list[CheckResult]:
        """A verdict for every check cell of the master, in order."""
        return [self.judge_cell(index) for index, cell in enumerate(self.master.cells) if is_check(cell)]


def answers_by_id(notebook: NotebookNode) -> dict[str, str]:
    """The student's solution cells (answers and written answers) by grade_id."""
    return {nbgrader(cell)["grade_id"]: cell.source for cell in notebook.cells
            if is_solution(cell) and nbgrader(cell).get("grade_id")}
