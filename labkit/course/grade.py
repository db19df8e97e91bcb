"""Grade a class: every student's notebooks checked against the masters, a gradebook, feedback.

For each student (a folder of notebooks named as the masters are), in a worker process of its
own so that nothing one student's notebooks do can stop the class:

1. **Judge** (`labkit.course.judge`): every check cell that calls labkit's checks is decided in
   the grader's process from what a runner process reports, after the answer passed the screen.
   This is the grade.
2. **Run** (unless `checks_only`): the student's notebooks, as released with the student's
   answers in them, run top to bottom in a fresh kernel each (smoke profile, a scratch project
   folder, `timeout` seconds per notebook). The executed copies are the student's feedback; a
   cell that crashed or hung is named. A lecturer's own check cells (anything but calls of
   labkit's checks) are graded here, by whether they ran without an error, like nbgrader does.
   Answers the screen refused are not run: their cell holds the reason instead.
3. **Written answers** (markdown answer cells with points) are listed as "to be marked by hand"
   with their points; they are never counted as passed or failed.

Each student's result is written the moment it is known (`students/<name>/result.json`), so a
crash loses nothing already graded, and a second run skips students whose notebooks and masters
are unchanged (`regrade` grades them again). The gradebook (CSV: student, notebook, exercise,
points, max, status, detail) and `grades.json` are rebuilt from those results.
"""

import contextlib
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit.course.judge import PROBE_SECONDS, CheckResult, Judge, RunnerSlot, answers_by_id
from labkit.course.masters import (
    HIDDEN_TESTS, check_calls, check_master, is_check, is_solution, is_written, master_paths, nbgrader, replace_regions,
)
from labkit.course.release import release_cell
from labkit.course.screen import AnswerRefused, Rules, notebook_names, screen
from labkit.course.exercises import EXERCISES

OUTPUT_FOLDER = "graded"  # inside a class or student folder, unless --output says otherwise
STATUSES = ("passed", "failed", "not reached", "missing", "to be marked by hand", "not graded")
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExerciseScore:
    """One graded cell of one notebook of one student."""

    student: str
    notebook: str
    grade_id: str
    points: float | None  # None: to be marked by hand
    max_points: float
    status: str  # one of STATUSES
    detail: str = ""  # the check's message, the screen's reason, or why the cell was not reached


@dataclass
class GradeSettings:
    """How a class is graded."""

    masters: Path
    timeout: float = 600  # seconds of execution each notebook may take in the feedback run
    checks_only: bool = False  # judge the checks without running the notebooks
    probe_seconds: float = PROBE_SECONDS
    threads: int = 1  # torch threads of each kernel


@dataclass
class StudentResult:
    student: str
    fingerprint: str
    scores: list[ExerciseScore] = field(default_factory=list)
    notebook_problems: list[str] = field(default_factory=list)  # cells that crashed or hung in the run
    written: dict[str, str] = field(default_factory=dict)  # grade_id -> the student's written answer
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(score.points or 0 for score in self.scores if score.status != "to be marked by hand")

    @property
    def autograded_max(self) -> float:
        return sum(score.max_points for score in self.scores if score.status != "to be marked by hand")

    @property
    def manual_max(self) -> float:
        return sum(score.max_points for score in self.scores if score.status == "to be marked by hand")


# --- one notebook ------------------------------------------------------------------------------------------------

def first_line(error: BaseException | str) -> str:
    """The line of a cell's error that says what went wrong, without terminal colours."""
    text = ANSI_COLOUR.sub("", str(error)).strip()
    for line in text.splitlines():  # nbclient puts the cell's source first; the error name and message last
        if line.startswith(("CheckFailed", "NotImplementedError")) or ("Error:" in line and not line.startswith(" ")):
            return line.strip()
    return text.splitlines()[-1].strip() if text else type(error).__name__


def screened_answer(master: NotebookNode, grade_id: str, source: str, names: set[str]) -> str | None:
    """Why the answer may not run (the screen's reason), or None."""
    exercise = EXERCISES.get(grade_id)
    if exercise is None:
        return None
    try:
        screen(source, Rules.for_exercise(exercise, names))
    except AnswerRefused as error:
        return str(error)
    return None


def feedback_notebook(master: NotebookNode, submission: NotebookNode | None, name: str) -> tuple[NotebookNode, set[int]]:
    """What the feedback run executes: the release of `master` with the student's answers in their
    cells (an answer the screen refused replaced by its stub and the reason), and, for a check
    cell that only the kernel can grade, the master's version with its hidden tests. Returns the
    notebook and the indices of those kernel-graded check cells."""
    answers = answers_by_id(submission) if submission is not None else {}
    names = notebook_names(cell.source for cell in master.cells if cell.cell_type == "code" and not is_solution(cell))
    notebook = nbformat.from_dict(master)
    cells, kernel_graded = [], set()
    for index, cell in enumerate(master.cells):
        where = f"{name}, cell {index}"
        released = release_cell(cell, where)
        grade_id = nbgrader(cell).get("grade_id")
        if is_solution(cell) and grade_id in answers:
            released.source = answers[grade_id]
            reason = screened_answer(master, grade_id, answers[grade_id], names) if cell.cell_type == "code" else None
            if reason:
                released.source = f"# Not run when graded: {reason}\nraise NotImplementedError()"
        if is_check(cell) and (check_calls(cell.source) is None or grade_id not in {e.check for e in EXERCISES.values()}):
            released.source = cell.source  # the master's cell, hidden tests included: the kernel grades it
            kernel_graded.add(index)
        cells.append(released)
    notebook.cells = cells
    notebook.metadata.pop("widgets", None)
    return notebook, kernel_graded


def execute_cells(notebook: NotebookNode, timeout: float, env: dict[str, str], cwd: Path) -> dict[int, str]:
    """Run `notebook` in place in a fresh kernel, cell by cell, for at most `timeout` seconds of
    execution in all; returns {cell index: what happened} for every cell that failed or was not run.

    A cell's error does not stop the run; a timeout or a dead kernel does, naming the cell, and
    every later code cell is reported as not reached.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from labkit.workbook import QUIET_KERNEL

    outcome: dict[int, str] = {}
    client = NotebookClient(notebook, timeout=int(timeout), kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}, extra_arguments=QUIET_KERNEL)
    code_cells = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    stopped = None

    def named(index: int) -> str:
        grade_id = nbgrader(notebook.cells[index]).get("grade_id")
        return f"cell {index}" + (f" ({grade_id})" if grade_id else "")

    with client.setup_kernel(env=env):
        deadline = time.monotonic() + timeout
        for index in code_cells:
            if stopped is not None:
                outcome[index] = f"not reached: {stopped}"
                continue
            client.timeout = max(1, int(deadline - time.monotonic()))
            try:
                client.execute_cell(notebook.cells[index], index)
            except CellExecutionError as error:
                outcome[index] = first_line(error)
            except (CellTimeoutError, TimeoutError):
                stopped = f"{named(index)} ran past the notebook's time limit of {timeout:g} s"
                outcome[index] = stopped
            except DeadKernelError:
                stopped = f"the kernel died in {named(index)} (the notebook crashed)"
                outcome[index] = stopped
    return outcome


def strip_for_feedback(notebook: NotebookNode, kernel_graded: set[int], name: str) -> NotebookNode:
    """The executed notebook as the student may see it: the hidden tests of kernel-graded cells
    removed, with their outputs."""
    notebook = nbformat.from_dict(notebook)
    for index in kernel_graded:
        cell = notebook.cells[index]
        cell.source = replace_regions(cell.source, HIDDEN_TESTS, [], f"{name}, cell {index}")
        # A traceback quotes the cell's lines, hidden ones included: keep only what went wrong.
        cell.outputs = [nbformat.v4.new_output("error", ename=output.ename, evalue=output.evalue,
                                               traceback=[f"{output.ename}: {output.evalue}"])
                        for output in cell.outputs if output.get("output_type") == "error"]
    return notebook


def notebook_scores(student: str, master: NotebookNode, name: str, verdicts: list[CheckResult],
                    run: dict[int, str] | None, kernel_graded: set[int]) -> list[ExerciseScore]:
    """One row per graded cell of the master: check cells by the judge (or, for kernel-graded
    ones, by the notebook run); written answers to be marked by hand."""
    verdict_by_id = {verdict.grade_id: verdict for verdict in verdicts}
    scores = []
    for index, cell in enumerate(master.cells):
        meta = nbgrader(cell)
        if is_written(cell):
            scores.append(ExerciseScore(student, name, meta["grade_id"], None, meta["points"], "to be marked by hand"))
        if not is_check(cell):
            continue
        verdict = verdict_by_id.get(meta["grade_id"])
        if verdict is not None and verdict.passed is not None:
            status, detail = ("passed", "") if verdict.passed else ("failed", verdict.detail)
        elif run is None:
            status, detail = "not graded", "a check only the notebook run can grade (run without --checks-only)"
        else:
            detail = run.get(index, "")
            status = "passed" if not detail else "not reached" if detail.startswith("not reached") else "failed"
        scores.append(ExerciseScore(student, name, meta["grade_id"], meta["points"] if status == "passed" else 0,
                                    meta["points"], status, detail))
    return scores


def read_submission(path: Path) -> tuple[NotebookNode | None, str]:
    """The student's notebook, or None with the reason."""
    if not path.is_file():
        return None, f"{path.name} is not in the submission"
    try:
        return nbformat.read(path, as_version=4), ""
    except Exception as error:  # an unreadable file scores like a missing one, with the reason
        return None, f"{path.name} could not be read: {first_line(error)}"


# --- one student ---------------------------------------------------------------------------------------------

def fingerprint(student_dir: Path, masters: list[Path]) -> str:
    """Changes when the student's notebooks, the masters or labkit's grading change."""
    digest = hashlib.sha256()
    for path in [*masters, *(student_dir / master.name for master in masters)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"absent")
    for module in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()


KERNEL_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TMPDIR", "VIRTUAL_ENV", "CONDA_PREFIX", "SYSTEMROOT")


def kernel_environment(home: Path, data_root: Path | None, threads: int, mark: str) -> dict[str, str]:
    """The feedback kernels' environment: nothing of the grader's own but what Python needs; the
    smoke profile, a scratch project folder (also HOME), no display, and a mark that finds every
    process the notebooks started."""
    environment = {key: value for key, value in os.environ.items() if key in KERNEL_ENVIRONMENT or key.startswith("LC_")}
    home.mkdir(parents=True, exist_ok=True)
    environment.update(LABKIT_PROFILE="smoke", LABKIT_HOME=str(home), HOME=str(home), MPLBACKEND="Agg", LABKIT_HEADLESS="1",
                       LABKIT_GRADE_MARK=mark, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if data_root is not None:
        environment["LABKIT_DATA"] = str(data_root)
    return environment


def kill_marked(mark: str) -> int:
    """Kill every process whose environment carries `mark` (Linux): what a notebook left running."""
    killed = 0
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if f"LABKIT_GRADE_MARK={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def grade_student(student_dir: Path, output: Path, settings: GradeSettings, data_root: Path | None = None) -> StudentResult:
    """Judge, run and list one student's notebooks; write the executed copies under `output`."""
    started = time.perf_counter()
    masters = master_paths(settings.masters)
    result = StudentResult(student_dir.name, fingerprint(student_dir, masters))
    mark = uuid.uuid4().hex
    os.environ["LABKIT_GRADE_MARK"] = mark  # the runners inherit it, so kill_marked finds them too
    with RunnerSlot(settings.probe_seconds) as runners, tempfile.TemporaryDirectory(prefix="labkit-grade-") as scratch:
        env = kernel_environment(Path(scratch) / "home", data_root, settings.threads, mark)
        for master_path in masters:
            master = nbformat.read(master_path, as_version=4)
            check_master(master, master_path.name)
            submission, problem = read_submission(student_dir / master_path.name)
            if submission is None:
                result.scores += [ExerciseScore(result.student, master_path.name, nbgrader(cell)["grade_id"],
                                                None if is_written(cell) else 0, nbgrader(cell)["points"], "missing",
                                                problem) for cell in master.cells if is_check(cell) or is_written(cell)]
                continue
            verdicts = Judge(master, answers_by_id(submission), runners).judge()
            run, kernel_graded = None, set()
            if not settings.checks_only:
                notebook, kernel_graded = feedback_notebook(master, submission, master_path.name)
                folder = Path(scratch) / "notebooks"
                folder.mkdir(exist_ok=True)
                run = execute_cells(notebook, settings.timeout, env, folder)
                result.notebook_problems += [f"{master_path.name}, cell {index}: {what}" for index, what in run.items()
                                             if not what.startswith("not reached")]
                executed = output / "notebooks"
                executed.mkdir(parents=True, exist_ok=True)
                nbformat.write(strip_for_feedback(notebook, kernel_graded, master_path.name), executed / master_path.name)
            result.scores += notebook_scores(result.student, master, master_path.name, verdicts, run, kernel_graded)
            result.written.update({nbgrader(cell)["grade_id"]: answers_by_id(submission).get(nbgrader(cell)["grade_id"], "")
                                   for cell in master.cells if is_written(cell)})
        kill_marked(mark)
    result.seconds = time.perf_counter() - started
    return result


# --- results on disk -------------------------------------------------------------------------------------------

def write_json(path: Path, value) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)


def result_to_dict(result: StudentResult) -> dict:
    return {"student": result.student, "fingerprint": result.fingerprint, "seconds": round(result.seconds, 1),
            "total": result.total, "autograded_max": result.autograded_max, "manual_max": result.manual_max,
            "scores": [asdict(score) for score in result.scores], "notebook_problems": result.notebook_problems,
            "written": result.written}


def result_from_dict(values: dict) -> StudentResult:
    return StudentResult(values["student"], values["fingerprint"], [ExerciseScore(**row) for row in values["scores"]],
                         values.get("notebook_problems", []), values.get("written", {}), values.get("seconds", 0.0))


def feedback_text(result: StudentResult) -> str:
    """The student's feedback: each exercise with its points and, where it failed, the message."""
    lines = [f"# Feedback for {result.student}", "",
             f"Autograded: {result.total:g} of {result.autograded_max:g} points"
             + (f"; {result.manual_max:g} more to be marked by hand." if result.manual_max else "."), "",
             "| notebook | exercise | points | status |", "|---|---|---|---|"]
    for score in result.scores:
        points = "to be marked" if score.points is None else f"{score.points:g} / {score.max_points:g}"
        lines.append(f"| {score.notebook} | {score.grade_id} | {points} | {score.status} |")
    for score in result.scores:
        if score.detail and score.status != "passed":
            lines += ["", f"## {score.notebook}: {score.grade_id} ({score.status})", "", "```", score.detail, "```"]
    if result.notebook_problems:
        lines += ["", "## Running the notebooks", ""] + [f"- {problem}" for problem in result.notebook_problems]
    if result.written:
        lines += ["", "## Written answers (to be marked by hand)"]
        for grade_id, text in result.written.items():
            lines += ["", f"### {grade_id}", "", text.strip() or "(no answer)"]
    return "\n".join(lines) + "\n"


def write_student(result: StudentResult, folder: Path) -> None:
    write_json(folder / "result.json", result_to_dict(result))
    (folder / "feedback.md").write_text(feedback_text(result))


def write_gradebook(results: list[StudentResult], output: Path) -> list[Path]:
    """gradebook.csv (one row per student and exercise) and grades.json (totals and rows)."""
    output.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = output / "gradebook.csv", output / "grades.json"
    temporary = csv_path.with_name(f".{csv_path.name}.tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "notebook", "exercise", "points", "max", "status", "detail"])
        for result in results:
            for score in result.scores:
                writer.writerow([score.student, score.notebook, score.grade_id,
                                 "" if score.points is None else f"{score.points:g}", f"{score.max_points:g}",
                                 score.status, score.detail.splitlines()[0] if score.detail else ""])
    os.replace(temporary, csv_path)
    write_json(json_path, {"students": {result.student: result_to_dict(result) for result in results}})
    return [csv_path, json_path]


def format_result(result: StudentResult) -> str:
    """A plain-text table of one student: one row per exercise, then the totals."""
    rows = [("notebook", "exercise", "points", "status")]
    rows += [(s.notebook, s.grade_id, "to mark" if s.points is None else f"{s.points:g} / {s.max_points:g}",
              s.status + (f": {s.detail.splitlines()[0]}" if s.detail and s.status != "passed" else ""))
             for s in result.scores]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(row[column].ljust(widths[column]) for column in range(3)) + "  " + row[3] for row in rows]
    manual = f" (+ {result.manual_max:g} to be marked by hand)" if result.manual_max else ""
    return "\n".join(lines + [f"total: {result.total:g} / {result.autograded_max:g}{manual}"])


# --- a class ---------------------------------------------------------------------------------------------------

def student_folders(folder: Path, output: Path) -> list[Path]:
    """The students of `folder`: the folder itself when it holds notebooks, else each subfolder that does."""
    if any(folder.glob("*.ipynb")):
        return [folder]
    students = [path for path in sorted(folder.iterdir())
                if path.is_dir() and not path.name.startswith(".") and path.resolve() != output.resolve()
                and any(path.glob("*.ipynb"))]
    if not students:
        raise FileNotFoundError(f"{folder} holds no notebooks and no student folders with notebooks; give a "
                                "student's folder or a folder of student folders")
    return students


def up_to_date(student_dir: Path, folder: Path, masters: list[Path]) -> bool:
    path = folder / "result.json"
    if not path.is_file():
        return False
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads(path.read_text())["fingerprint"] == fingerprint(student_dir, masters)
    return False


def worker_command(student_dir: Path, folder: Path, settings: GradeSettings, data_root: Path | None) -> list[str]:
    spec = {"student": str(student_dir), "folder": str(folder), "masters": str(settings.masters),
            "timeout": settings.timeout, "checks_only": settings.checks_only, "probe_seconds": settings.probe_seconds,
            "threads": settings.threads, "data_root": str(data_root) if data_root else None}
    return [sys.executable, "-m", "labkit.course.grade", json.dumps(spec)]


def grade_in_worker(student_dir: Path, folder: Path, settings: GradeSettings, data_root: Path | None) -> StudentResult:
    """Grade one student in a process of its own; a worker that dies is reported, not fatal."""
    masters = master_paths(settings.masters)
    limit = (0 if settings.checks_only else settings.timeout * len(masters)) + 60 * len(masters) + 120
    process = subprocess.Popen(worker_command(student_dir, folder, settings, data_root), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        log = f"grading took longer than {limit:g} s and was stopped\n{log}"
    path = folder / "result.json"
    if process.returncode == 0 and path.is_file():
        return result_from_dict(json.loads(path.read_text()))
    reason = log.strip().splitlines()[-1] if log.strip() else f"exit code {process.returncode}"
    result = StudentResult(student_dir.name, fingerprint(student_dir, masters),
                           [ExerciseScore(student_dir.name, "", "", 0, 0, "failed", f"grading crashed: {reason}")])
    write_student(result, folder)
    return result


def prepared_data(work: Path) -> Path:
    """The synthetic dataset the feedback runs share (made once per class, read by every student's kernels)."""
    from labkit.data import make_synthetic

    root = work / "synthetic"
    if not (root / "annotations" / "trainval.txt").is_file():
        make_synthetic(root)
    return root


def grade_class(folder: str | Path, masters: str | Path, *, output: str | Path | None = None, jobs: int | None = None,
                regrade: bool = False, timeout: float = 600, checks_only: bool = False,
                report=print) -> list[StudentResult]:
    """Grade every student of `folder` (or the one student it is); returns their results in order.

    Args:
        output: where results, feedback and the gradebook go (default: `<folder>/graded`).
        jobs: students graded at once (default: the number of CPU cores).
        regrade: grade students again whose result is up to date.
        timeout: seconds of execution each notebook may take in the feedback run.
        checks_only: judge the check cells without running the notebooks (much faster; no
            executed copies, and a lecturer's own check cells are not graded).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give a student's folder or a folder of student folders")
    if timeout < 1:
        raise ValueError(f"--timeout must be a positive number of seconds, got {timeout}")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    output = Path(output) if output else folder / OUTPUT_FOLDER
    masters_dir = Path(masters)
    master_list = master_paths(masters_dir)
    students = student_folders(folder, output)
    settings = GradeSettings(masters_dir.resolve(), timeout, checks_only,
                             threads=max(1, (os.cpu_count() or 1) // min(jobs, len(students))))
    single = students == [folder]
    results: dict[str, StudentResult] = {}
    pending = []
    for student in students:
        target = output if single else output / "students" / student.name
        if not regrade and up_to_date(student, target, master_list):
            results[student.name] = result_from_dict(json.loads((target / "result.json").read_text()))
            report(f"{student.name}: up to date, {results[student.name].total:g} / {results[student.name].autograded_max:g}")
        else:
            pending.append((student, target))
    with tempfile.TemporaryDirectory(prefix="labkit-class-") as work:
        data_root = prepared_data(Path(work)) if pending and not checks_only else None
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(grade_in_worker, student, target, settings, data_root): student
                       for student, target in pending}
            for future in as_completed(futures):
                student = futures[future]
                result = future.result()
                results[student.name] = result
                report(f"{student.name}: {result.total:g} / {result.autograded_max:g}"
                       + (f" (+ {result.manual_max:g} to mark)" if result.manual_max else "")
                       + f", {result.seconds:.0f} s")
    ordered = [results[student.name] for student in students]
    write_gradebook(ordered, output)
    return ordered


def worker(spec: dict) -> None:
    """Grade one student (the worker process `grade_in_worker` starts) and write the result."""
    settings = GradeSettings(Path(spec["masters"]), spec["timeout"], spec["checks_only"], spec["probe_seconds"],
                             spec["threads"])
    folder = Path(spec["folder"])
    result = grade_student(Path(spec["student"]), folder, settings, Path(spec["data_root"]) if spec["data_root"] else None)
    write_student(result, folder)


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
