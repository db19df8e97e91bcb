"""The student notebooks: every answer stubbed, hidden checks gone, graded cells locked.

`release` writes what nbgrader's `generate_assignment` writes for the same masters: solution
regions replaced by `# YOUR CODE HERE` / `raise NotImplementedError()` (markdown: `YOUR ANSWER
HERE`), hidden-test regions removed, outputs, execution counts, cell timings and saved widget
state cleared, and nbgrader's locks and checksums set (`LockCells`, `ComputeChecksums`): answer
cells cannot be deleted, check and read-only cells can be neither deleted nor edited.
"""

import hashlib
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit.course.masters import (
    HIDDEN_TESTS, check_master, is_check, is_locked, is_solution, master_paths, nbgrader, replace_regions, student_stub,
)


def nbgrader_checksum(cell: NotebookNode) -> str:
    """nbgrader's `utils.compute_checksum`: source, type, flags, grade_id and points, in that order."""
    meta = nbgrader(cell)
    digest = hashlib.md5()
    for part in (cell.source, cell.cell_type, str(bool(meta.get("grade"))), str(bool(meta.get("solution"))),
                 str(is_locked(cell)), meta["grade_id"]):
        digest.update(part.encode("utf-8"))
    if meta.get("grade"):
        digest.update(str(float(meta["points"])).encode("utf-8"))
    return digest.hexdigest()


def lock(cell: NotebookNode) -> None:
    """nbgrader's `LockCells` with its defaults: solution cells undeletable; check and read-only
    cells undeletable and uneditable."""
    if is_solution(cell):
        cell.metadata["deletable"] = False
    elif nbgrader(cell).get("grade") or is_locked(cell):
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False


def release_cell(cell: NotebookNode, where: str) -> NotebookNode:
    """The student's version of one master cell."""
    cell = nbformat.from_dict(cell)
    if is_solution(cell):
        cell.source = student_stub(cell, where)
    cell.source = replace_regions(cell.source, HIDDEN_TESTS, [], where)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    cell.metadata.pop("execution", None)
    cell.metadata.pop("collapsed", None)
    if "nbgrader" in cell.metadata:
        lock(cell)
        if is_solution(cell) or is_check(cell) or is_locked(cell):
            cell.metadata["nbgrader"]["checksum"] = nbgrader_checksum(cell)
            cell.metadata["nbgrader"]["cell_type"] = cell.cell_type
    return cell


def release_notebook(notebook: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The student version of a master notebook (a new object; the master is left unchanged)."""
    check_master(notebook, name)
    released = nbformat.from_dict(notebook)
    released.cells = [release_cell(cell, f"{name}, cell {index}") for index, cell in enumerate(notebook.cells)]
    released.metadata.pop("widgets", None)  # the masters' saved slider state and pictures
    nbformat.validate(released)
    return released


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
