"""The release: what nbgrader's generate_assignment makes of the same masters, and nothing of the
masters' own run."""

import hashlib

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import cli
from labkit.course.masters import mark_exercise
from labkit.course.release import release, release_notebook


def master() -> nbformat.NotebookNode:
    notebook = new_notebook(cells=[
        new_markdown_cell("# Masks"),
        mark_exercise(new_code_cell("import numpy as np"), "imports", "readonly"),
        mark_exercise(new_code_cell("def trimap_to_mask(trimap):\n    ### BEGIN SOLUTION\n"
                                    "    return np.isin(trimap, (1, 3)).astype(np.uint8)\n    ### END SOLUTION"),
                      "trimap_to_mask", "answer"),
        mark_exercise(new_code_cell("checks.check_trimap_to_mask(trimap_to_mask)\n### BEGIN HIDDEN TESTS\n"
                                    "checks.check_trimap_to_mask(trimap_to_mask, hidden=True)\n### END HIDDEN TESTS"),
                      "check_trimap_to_mask", "check", points=1),
        new_markdown_cell("**Question 1 (2 points).** Why count the border as pet?"),
        mark_exercise(new_markdown_cell("### BEGIN SOLUTION\nBecause the band is part of the outline.\n### END SOLUTION"),
                      "border_question", "written", points=2),
        new_code_cell("print('plain')"),
    ])
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [new_output("stream", text="from the masters' run\n")]
            cell.execution_count = 7
            cell.metadata["execution"] = {"iopub.execute_input": "2026-11-30T10:00:00Z"}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"a": {}}}}
    return notebook


def nbgraders_checksum(cell) -> str:
    """nbgrader 0.9's utils.compute_checksum, spelled out from its source."""
    meta = cell.metadata["nbgrader"]
    locked = False if meta.get("solution") else True if meta.get("grade") else meta.get("locked", False)
    digest = hashlib.md5()
    digest.update(cell.source.encode())
    digest.update(cell.cell_type.encode())
    for flag in (meta.get("grade", False), meta.get("solution", False), locked):
        digest.update(str(flag).encode())
    digest.update(meta["grade_id"].encode())
    if meta.get("grade"):
        digest.update(str(float(meta["points"])).encode())
    return digest.hexdigest()


@pytest.fixture
def released():
    return release_notebook(master(), "00_masks.ipynb")


def test_solutions_are_stubbed_at_their_indentation(released):
    assert released.cells[2].source == "def trimap_to_mask(trimap):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert released.cells[5].source == "YOUR ANSWER HERE"


def test_hidden_tests_are_removed_and_public_checks_kept(released):
    assert released.cells[3].source == "checks.check_trimap_to_mask(trimap_to_mask)"


def test_nothing_of_the_masters_run_survives(released):
    assert "widgets" not in released.metadata
    for cell in released.cells:
        assert "execution" not in cell.metadata
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("index, deletable, editable", [
    (1, False, False),  # read-only cell
    (2, False, None),  # answer cell
    (3, False, False),  # check cell
    (5, False, None),  # written answer
    (6, None, None),  # an ordinary cell
])
def test_cells_are_locked_as_nbgrader_locks_them(released, index, deletable, editable):
    metadata = released.cells[index].metadata
    assert metadata.get("deletable") == deletable and metadata.get("editable") == editable


def test_graded_cells_carry_nbgraders_checksum_and_cell_type(released):
    for cell in released.cells:
        if "nbgrader" in cell.metadata:
            assert cell.metadata.nbgrader["checksum"] == nbgraders_checksum(cell)
            assert cell.metadata.nbgrader["cell_type"] == cell.cell_type


def test_the_master_is_left_unchanged():
    notebook = master()
    before = nbformat.writes(notebook)
    release_notebook(notebook)
    assert nbformat.writes(notebook) == before


def test_an_unclosed_solution_region_is_refused():
    notebook = master()
    notebook.cells[2].source = notebook.cells[2].source.replace("    ### END SOLUTION", "")
    with pytest.raises(ValueError, match="never closed"):
        release_notebook(notebook, "00_masks.ipynb")


def test_a_check_cell_without_points_is_refused():
    notebook = master()
    del notebook.cells[3].metadata["nbgrader"]["points"]
    with pytest.raises(ValueError, match="has no points"):
        release_notebook(notebook, "00_masks.ipynb")


def test_the_release_command_writes_every_master_and_refuses_to_overwrite_them(tmp_path, capsys):
    masters = tmp_path / "masters"
    masters.mkdir()
    nbformat.write(master(), masters / "00_masks.ipynb")
    assert cli.main(["release", "--masters", str(masters), "--output", str(tmp_path / "out")]) == 0
    assert [path.name for path in (tmp_path / "out").glob("*.ipynb")] == ["00_masks.ipynb"]
    assert cli.main(["release", "--masters", str(masters), "--output", str(masters)]) == 1
    assert "would overwrite the masters" in capsys.readouterr().err


def test_a_release_of_a_folder_without_notebooks_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebooks in"):
        release(tmp_path, tmp_path / "out")
