"""Grade a student's notebooks against the masters: one fresh kernel per notebook, a time limit
each, a score per graded check cell.

What runs is the master with the student's answers in it: every answer cell comes from the
student's notebook (paired by nbgrader `grade_id`), every other cell from the master, so the hidden
checks are always there and a deleted or edited check cell changes nothing. A check cell that
runs without an error earns its points. A notebook that is missing, kills its kernel or runs past
its time limit scores 0 for every check it did not reach; the other notebooks are graded as usual.
"""

import csv
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from labkit.lab import CODE_STUB, SOLUTION, is_answer, is_check, master_paths, nbgrader, replace_regions
from labkit.workbook import QUIET_KERNEL


@dataclass
class ExerciseScore:
    """One graded check cell of one notebook."""

    notebook: str
    grade_id: str
    points: float
    max_points: float
    status: str  # "passed", "failed", "not reached" or "missing"
    detail: str = ""  # the error's first line, or why the cell was not reached


def answers_by_id(notebook: NotebookNode) -> dict[str, str]:
    return {nbgrader(cell)["grade_id"]: cell.source for cell in notebook.cells if is_answer(cell) and nbgrader(cell).get("grade_id")}


def merged_notebook(master: NotebookNode, submission: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The master's cells in the master's order, with each answer cell's source taken from the
    submission; an answer the submission lacks is the release's stub (it fails its check)."""
    answers = answers_by_id(submission)
    merged = nbformat.from_dict(master)
    cells = []
    for index, cell in enumerate(master.cells):
        cell = nbformat.from_dict(cell)
        if is_answer(cell):
            stub = replace_regions(cell.source, SOLUTION, CODE_STUB, f"{name}, cell {index}")
            cell.source = answers.get(nbgrader(cell)["grade_id"], stub)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    merged.cells = cells
    return merged


def kernel_environment(home: Path) -> dict[str, str]:
    """The grading kernel's environment: the smoke profile, a scratch project folder, no display."""
    return {**os.environ, "LABKIT_PROFILE": "smoke", "LABKIT_HOME": str(home), "MPLBACKEND": "Agg"}


ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # the terminal colours of a kernel's traceback


def first_line(error: BaseException) -> str:
    """The line of a cell's error that says what went wrong, without terminal colours."""
    text = ANSI_COLOUR.sub("", str(error)).strip()
    for line in text.splitlines():  # nbclient puts the cell's source first; the error name and message last
        if line.startswith(("CheckFailed", "NotImplementedError")) or ("Error:" in line and not line.startswith(" ")):
            return line.strip()
    return text.splitlines()[-1].strip() if text else type(error).__name__


def execute_cells(notebook: NotebookNode, timeout: float, env: dict[str, str], cwd: Path) -> dict[int, str]:
    """Run `notebook` in place in a fresh kernel, cell by cell, for at most `timeout` seconds of
    execution in all; returns {cell index: what happened} for every cell that failed or was not run.

    A cell's error does not stop the run; a timeout or a dead kernel does, and every later code
    cell is reported as not reached.
    """
    outcome: dict[int, str] = {}
    client = NotebookClient(notebook, timeout=int(timeout), kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}, extra_arguments=QUIET_KERNEL)
    code_cells = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    stopped = None
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
                stopped = f"the notebook ran past its time limit of {timeout:g} s"
                outcome[index] = stopped
            except DeadKernelError:
                stopped = "the kernel died (the notebook crashed)"
                outcome[index] = stopped
    return outcome


def check_cells(master: NotebookNode) -> list[tuple[int, dict]]:
    return [(index, nbgrader(cell)) for index, cell in enumerate(master.cells) if is_check(cell)]


def grade_notebook(master_path: Path, submission_path: Path, timeout: float, env: dict[str, str],
                   executed_dir: Path | None = None) -> list[ExerciseScore]:
    """Scores of one notebook's check cells; all 0 with status "missing" when the student's notebook is absent."""
    master = nbformat.read(master_path, as_version=4)
    checks, name = check_cells(master), master_path.name
    if not submission_path.is_file():
        return [ExerciseScore(name, meta["grade_id"], 0, meta["points"], "missing", f"{submission_path} not found")
                for _, meta in checks]
    try:
        submission = nbformat.read(submission_path, as_version=4)
    except Exception as error:  # an unreadable file scores like a missing one, with the reason
        return [ExerciseScore(name, meta["grade_id"], 0, meta["points"], "missing", f"unreadable: {error}")
                for _, meta in checks]
    notebook = merged_notebook(master, submission, name)
    outcome = execute_cells(notebook, timeout, env, submission_path.parent.resolve())
    if executed_dir is not None:
        executed_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed_dir / name)
    scores = []
    for index, meta in checks:
        detail = outcome.get(index, "")
        status = "passed" if not detail else "not reached" if detail.startswith("not reached") else "failed"
        scores.append(ExerciseScore(name, meta["grade_id"], meta["points"] if status == "passed" else 0,
                                    meta["points"], status, detail))
    return scores


def grade(submission_dir: str | Path, masters_dir: str | Path, timeout: float = 600,
          executed_dir: str | Path | None = None) -> list[ExerciseScore]:
    """Grade every master notebook's exercises in the student's folder, in notebook order.

    The notebooks share one scratch LABKIT_HOME, so a later notebook finds what an earlier one
    made (the synthetic data, checkpoints), as in a student's own run.

    Args:
        submission_dir: the student's notebooks, named as the masters are.
        timeout: seconds of execution each notebook may take.
        executed_dir: where to write the executed notebooks (the student's feedback), if anywhere.
    """
    submission_dir = Path(submission_dir)
    if not submission_dir.is_dir():
        raise FileNotFoundError(f"{submission_dir} is not a folder; give the folder holding the student's notebooks")
    masters = master_paths(masters_dir)
    with tempfile.TemporaryDirectory(prefix="labkit-grade-home-") as home:
        env = kernel_environment(Path(home))
        return [score for master in masters
                for score in grade_notebook(master, submission_dir / master.name, timeout, env,
                                            Path(executed_dir) if executed_dir else None)]


def format_scores(scores: list[ExerciseScore]) -> str:
    """A plain-text table: one row per exercise, then the total."""
    rows = [("notebook", "exercise", "points", "status")]
    rows += [(s.notebook, s.grade_id, f"{s.points:g} / {s.max_points:g}", s.status + (f": {s.detail}" if s.detail else ""))
             for s in scores]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(row[column].ljust(widths[column]) for column in range(3)) + "  " + row[3] for row in rows]
    total, most = sum(s.points for s in scores), sum(s.max_points for s in scores)
    return "\n".join(lines + [f"total: {total:g} / {most:g}"])


def write_scores(scores: list[ExerciseScore], output_dir: str | Path) -> list[Path]:
    """grades.json (rows and totals) and grades.csv (one row per exercise) in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(score) for score in scores]
    json_path, csv_path = output_dir / "grades.json", output_dir / "grades.csv"
    json_path.write_text(json.dumps({"total": sum(s.points for s in scores), "max_total": sum(s.max_points for s in scores),
                                     "exercises": rows}, indent=1))
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(ExerciseScore.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
    return [json_path, csv_path]
