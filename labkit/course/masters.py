"""Master notebooks in nbgrader's format: the marks on their cells, and reading them.

A master is the finished workbook with its exercises marked the way nbgrader marks them: the
answer between `### BEGIN SOLUTION` and `### END SOLUTION` in an answer cell, extra checks
between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` in a check cell, and nbgrader's cell
metadata (schema version 3) on every graded cell, so the same notebooks work with nbgrader itself.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

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
    "written": {"grade": True, "solution": True, "locked": False},  # manually graded answer: marked by hand
    "readonly": {"grade": False, "solution": False, "locked": True},  # restored from the master when grading
}


def mark_exercise(cell: NotebookNode, grade_id: str, kind: str = "answer", points: float | None = None) -> NotebookNode:
    """Set nbgrader's metadata on `cell` (in place, and returned).

    Args:
        grade_id: unique in the notebook; the grader pairs a student's cell with the master's by it.
        kind: "answer" (the student's code), "check" (a graded check cell), "written" (an answer
            marked by hand, usually markdown) or "readonly".
        points: what a passing check cell or a written answer is worth; required for those two.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", grade_id or ""):
        raise ValueError(f"grade_id must be letters, digits, '_' or '-', got {grade_id!r}")
    graded = KINDS[kind]["grade"]
    if graded != (points is not None):
        raise ValueError(f"a {kind} cell {'needs' if graded else 'takes no'} points (grade_id {grade_id!r})")
    cell.metadata["nbgrader"] = {**KINDS[kind], "grade_id": grade_id, "schema_version": SCHEMA_VERSION, "task": False}
    if points is not None:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def nbgrader(cell: NotebookNode) -> dict:
    """The cell's nbgrader metadata ({} for an ordinary cell)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_solution(cell: NotebookNode) -> bool:
    """A cell whose content is the student's: an autograded answer or a written one."""
    return bool(nbgrader(cell).get("solution"))


def is_answer(cell: NotebookNode) -> bool:
    """An autograded answer cell (code the checks test)."""
    meta = nbgrader(cell)
    return bool(meta.get("solution")) and not meta.get("grade")


def is_written(cell: NotebookNode) -> bool:
    """A manually graded answer: points, marked by hand."""
    meta = nbgrader(cell)
    return bool(meta.get("solution")) and bool(meta.get("grade"))


def is_check(cell: NotebookNode) -> bool:
    meta = nbgrader(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def is_locked(cell: NotebookNode) -> bool:
    """nbgrader's rule: check cells and read-only cells are restored from the master."""
    meta = nbgrader(cell)
    return not meta.get("solution") and bool(meta.get("grade") or meta.get("locked"))


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


def without_markers(source: str, markers: tuple[str, str]) -> str:
    """`source` with the marker lines removed and what they enclose kept (the master's answer)."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in markers)


def student_stub(cell: NotebookNode, where: str = "a cell") -> str:
    """What the release puts in a solution cell: its solution regions replaced by the stub."""
    return replace_regions(cell.source, SOLUTION, MARKDOWN_STUB if cell.cell_type == "markdown" else CODE_STUB, where)


def check_master(notebook: NotebookNode, name: str) -> None:
    """Refuse a master whose graded cells nbgrader would refuse: a missing or repeated grade_id,
    a graded cell without points, markers outside the cells that may hold them."""
    seen = set()
    for index, cell in enumerate(notebook.cells):
        meta, where = nbgrader(cell), f"{name}, cell {index}"
        if regions(cell.source, SOLUTION, where) and not meta.get("solution"):
            raise ValueError(f"{where} has a solution region but is not an answer cell; mark it with mark_exercise")
        if regions(cell.source, HIDDEN_TESTS, where) and not is_check(cell):
            raise ValueError(f"{where} has hidden tests but is not a check cell; mark it with mark_exercise")
        if not (meta.get("grade") or meta.get("solution") or meta.get("locked")):
            continue
        grade_id = meta.get("grade_id")
        if not grade_id or grade_id in seen:
            raise ValueError(f"{where}: grade_id {grade_id!r} is {'repeated' if grade_id else 'missing'}")
        seen.add(grade_id)
        if meta.get("grade") and "points" not in meta:
            raise ValueError(f"{where}: graded cell {grade_id!r} has no points")


def master_paths(masters_dir: str | Path) -> list[Path]:
    masters = sorted(Path(masters_dir).glob("*.ipynb"))
    if not masters:
        raise FileNotFoundError(f"no notebooks in {masters_dir}; give the folder that holds the master notebooks")
    return masters


def default_masters() -> Path:
    from labkit import paths

    return paths.project_dir() / "notebooks"


@dataclass(frozen=True)
class CheckCall:
    """One call in a check cell: `checks.<function>(<names...>, <keyword>=<constant>...)`."""

    function: str
    names: tuple[str, ...]
    keywords: dict


def check_calls(source: str) -> list[CheckCall] | None:
    """The calls of labkit's checks a check cell makes, public and hidden alike; None when the cell
    does anything else (a lecturer's own assertions), which only the notebook's kernel can grade."""
    try:
        tree = ast.parse(without_markers(source, HIDDEN_TESTS))
    except SyntaxError:
        return None
    calls = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "checks"
                and all(isinstance(arg, ast.Name) for arg in call.args)
                and all(keyword.arg and isinstance(keyword.value, ast.Constant) for keyword in call.keywords)):
            return None
        calls.append(CheckCall(call.func.attr, tuple(arg.id for arg in call.args),
                               {keyword.arg: keyword.value.value for keyword in call.keywords}))
    return calls or None


def definition_only(source: str) -> bool:
    """True for a cell that only imports and defines (functions, classes): safe to run anywhere."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return bool(tree.body) and all(isinstance(node, allowed) or isinstance(node, ast.Expr)
                                   and isinstance(node.value, ast.Constant) for node in tree.body)
