"""Lab mode in nbgrader's format: master notebooks, the student release, and the CLI for both.

A master notebook is the finished workbook with its exercises marked the way nbgrader marks them:
the answer between `### BEGIN SOLUTION` and `### END SOLUTION` in an answer cell, extra checks
between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` in a check cell, and nbgrader's cell
metadata (schema version 3) on both, so the same notebooks also work with nbgrader itself.
`release` writes the student version; `labkit.grading` scores a student's notebooks.
"""

import argparse
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TESTS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = ["YOUR ANSWER HERE"]
SCHEMA_VERSION = 3  # nbgrader/nbgraderformat/v3.py
# nbgrader's cell types, by the flags it stores (grade, solution, locked).
KINDS = {
    "answer": {"grade": False, "solution": True, "locked": False},  # autograded answer: the student writes here
    "check": {"grade": True, "solution": False, "locked": True},  # autograder tests: points if it runs cleanly
    "readonly": {"grade": False, "solution": False, "locked": True},  # restored from the master when grading
}


def mark_exercise(cell: NotebookNode, grade_id: str, kind: str = "answer", points: float | None = None) -> NotebookNode:
    """Set nbgrader's metadata on `cell` (in place, and returned).

    Args:
        grade_id: unique in the notebook; the grader pairs a student's cell with the master's by it.
        kind: "answer" (the student's code), "check" (a graded check cell) or "readonly".
        points: what a passing check cell earns; required for "check", not allowed otherwise.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", grade_id or ""):
        raise ValueError(f"grade_id must be letters, digits, '_' or '-', got {grade_id!r}")
    if (kind == "check") != (points is not None):
        raise ValueError(f"a {kind} cell {'needs' if kind == 'check' else 'takes no'} points (grade_id {grade_id!r})")
    cell.metadata["nbgrader"] = {**KINDS[kind], "grade_id": grade_id, "schema_version": SCHEMA_VERSION, "task": False}
    if points is not None:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def nbgrader(cell: NotebookNode) -> dict:
    """The cell's nbgrader metadata ({} for an ordinary cell)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_answer(cell: NotebookNode) -> bool:
    return bool(nbgrader(cell).get("solution"))


def is_check(cell: NotebookNode) -> bool:
    meta = nbgrader(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def regions(source: str, markers: tuple[str, str], where: str = "a cell") -> list[tuple[int, int]]:
    """(begin, end) line numbers of every marked region in `source`.

    Raises:
        ValueError: a marker without its partner, or regions nested; the message names `where`.
    """
    found, begin = [], None
    for number, line in enumerate(source.splitlines()):
        if line.strip() == markers[0]:
            if begin is not None:
                raise ValueError(f"{where}: {markers[0]} on line {number + 1} inside another region; close it first")
            begin = number
        elif line.strip() == markers[1]:
            if begin is None:
                raise ValueError(f"{where}: {markers[1]} on line {number + 1} without a {markers[0]} before it")
            found.append((begin, number))
            begin = None
    if begin is not None:
        raise ValueError(f"{where}: {markers[0]} on line {begin + 1} is never closed by {markers[1]}")
    return found


def replace_regions(source: str, markers: tuple[str, str], stub: list[str], where: str = "a cell") -> str:
    """`source` with every marked region (markers included) replaced by `stub`, at the region's indentation."""
    lines = source.splitlines()
    for begin, end in reversed(regions(source, markers, where)):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        lines[begin:end + 1] = [indent + line for line in stub]
    return "\n".join(lines)


def release_cell(cell: NotebookNode, where: str) -> NotebookNode:
    """The student's version of one master cell: solutions stubbed, hidden tests gone, outputs cleared."""
    cell = nbformat.from_dict(cell)
    stub = MARKDOWN_STUB if cell.cell_type == "markdown" else CODE_STUB
    cell.source = replace_regions(cell.source, SOLUTION, stub, where)
    cell.source = replace_regions(cell.source, HIDDEN_TESTS, [], where)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    cell.metadata.pop("execution", None)
    return cell


def check_master(notebook: NotebookNode, name: str) -> None:
    """Refuse a master whose graded cells nbgrader would refuse: a missing or repeated grade_id,
    a check cell without points, markers outside the cells that may hold them."""
    seen = set()
    for index, cell in enumerate(notebook.cells):
        meta, where = nbgrader(cell), f"{name}, cell {index}"
        if regions(cell.source, SOLUTION, where) and not meta.get("solution"):
            raise ValueError(f"{where} has a solution region but is not an answer cell; mark it with mark_exercise")
        if regions(cell.source, HIDDEN_TESTS, where) and not meta.get("grade"):
            raise ValueError(f"{where} has hidden tests but is not a check cell; mark it with mark_exercise")
        if not (meta.get("grade") or meta.get("solution") or meta.get("locked")):
            continue
        grade_id = meta.get("grade_id")
        if not grade_id or grade_id in seen:
            raise ValueError(f"{where}: grade_id {grade_id!r} is {'repeated' if grade_id else 'missing'}")
        seen.add(grade_id)
        if meta.get("grade") and "points" not in meta:
            raise ValueError(f"{where}: graded cell {grade_id!r} has no points")


def release_notebook(notebook: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The student version of a master notebook (a new object; the master is left unchanged)."""
    check_master(notebook, name)
    released = nbformat.from_dict(notebook)
    released.cells = [release_cell(cell, f"{name}, cell {index}") for index, cell in enumerate(notebook.cells)]
    nbformat.validate(released)
    return released


def master_paths(masters_dir: str | Path) -> list[Path]:
    masters = sorted(Path(masters_dir).glob("*.ipynb"))
    if not masters:
        raise FileNotFoundError(f"no notebooks in {masters_dir}; give the folder that holds the master notebooks")
    return masters


def release(masters_dir: str | Path, output_dir: str | Path) -> list[Path]:
    """Write the student version of every master notebook in `masters_dir` into `output_dir`."""
    masters, output_dir = master_paths(masters_dir), Path(output_dir)
    if output_dir.resolve() == Path(masters_dir).resolve():
        raise ValueError("the release would overwrite the masters; give another --output folder")
    released = [(path.name, release_notebook(nbformat.read(path, as_version=4), path.name)) for path in masters]
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, notebook in released:  # written only once every master has been released without error
        nbformat.write(notebook, output_dir / name)
    return [output_dir / name for name, _ in released]


def default_masters() -> Path:
    from labkit import paths

    return paths.project_dir() / "notebooks"


def add_lab_parsers(commands) -> None:
    """`release` and `grade` subcommands."""
    parser = commands.add_parser("release", help="write the student notebooks: answers stubbed, hidden checks removed")
    parser.add_argument("--output", required=True, help="folder for the student notebooks")
    parser.add_argument("--masters", help="folder of master notebooks (default: notebooks/)")
    parser = commands.add_parser("grade", help="run a student's notebooks in fresh kernels and score every exercise")
    parser.add_argument("submission", help="folder holding the student's notebooks")
    parser.add_argument("--masters", help="folder of master notebooks (default: notebooks/)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds each notebook may run (default 600)")
    parser.add_argument("--output", help="folder for grades.json, grades.csv and executed copies (default: SUBMISSION/graded)")


def run_release(args: argparse.Namespace) -> None:
    written = release(args.masters or default_masters(), args.output)
    print(f"{len(written)} student notebooks written to {args.output}")


def run_grade(args: argparse.Namespace) -> None:
    from labkit.grading import format_scores, grade, write_scores

    if args.timeout < 1:
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    scores = grade(args.submission, args.masters or default_masters(), timeout=args.timeout,
                   executed_dir=Path(args.output or Path(args.submission) / "graded") / "executed")
    print(format_scores(scores))
    written = write_scores(scores, args.output or Path(args.submission) / "graded")
    print("written: " + ", ".join(str(path) for path in written))
