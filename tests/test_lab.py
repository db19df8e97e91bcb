"""Lab mode: the release hides every answer and hidden check; grading scores what runs.

Small master notebooks are built here with nbformat (three exercises over two notebooks, graded
by the real checks); each grading run starts one kernel per notebook, so the runs are shared
between the tests that read them.
"""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import cli
from labkit.grading import execute_cells, first_line, format_scores, grade, kernel_environment, write_scores
from labkit.lab import mark_exercise, release, release_notebook

TRIMAP_SOLUTION = "    return np.isin(trimap, (1, 3)).astype(np.uint8)"
DICE_SOLUTION = [
    "    predicted = torch.sigmoid(logits[:, 0]) > threshold",
    "    truth = target == 1",
    "    overlap = (predicted & truth).sum((1, 2)).float()",
    "    total = (predicted.sum((1, 2)) + truth.sum((1, 2))).float()",
]
WRONG_DICE = """def dice_per_image(logits, target, threshold=0.5):
    predicted, truth = torch.sigmoid(logits[:, 0]) > threshold, target == 1
    return (2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())).repeat(len(logits))"""
POINTS = {("00_masks.ipynb", "check_trimap"): 1, ("01_metrics.ipynb", "check_dice_iou"): 2,
          ("01_metrics.ipynb", "check_mask"): 1}
HANG_LIMIT = 15  # seconds: enough for a kernel to import torch and run 01 on a busy 2-core machine


def answer(grade_id: str, source: str):
    return mark_exercise(new_code_cell(source), grade_id, "answer")


def check(grade_id: str, points: float, public: str, hidden: str):
    source = f"{public}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS"
    return mark_exercise(new_code_cell(source), grade_id, "check", points=points)


def masks_master():
    return new_notebook(cells=[
        new_markdown_cell("# Masks\nWrite `trimap_to_mask`: 1 and 3 are pet, 2 is background."),
        mark_exercise(new_code_cell("import numpy as np\nfrom labkit.checks import check_trimap_to_mask"), "imports_00", "readonly"),
        answer("trimap_to_mask", "def trimap_to_mask(trimap: np.ndarray) -> np.ndarray:\n"
                                 f"    ### BEGIN SOLUTION\n{TRIMAP_SOLUTION}\n    ### END SOLUTION"),
        check("check_trimap", 1, "check_trimap_to_mask(trimap_to_mask)", "check_trimap_to_mask(trimap_to_mask, seed=1)"),
    ])


def metrics_master():
    dice_body = "\n".join(DICE_SOLUTION) + "\n    return torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total))"
    iou_body = ("    predicted, truth = torch.sigmoid(logits[:, 0]) > threshold, target == 1\n"
                "    union = (predicted | truth).sum((1, 2)).float()\n"
                "    return torch.where(union > 0, (predicted & truth).sum((1, 2)).float() / union.clamp_min(1), torch.ones_like(union))")
    mask_body = ("    resized = F.interpolate(logits, size=(height, width), mode='bilinear', align_corners=False)\n"
                 "    return torch.sigmoid(resized)[0, 0] > threshold")
    return new_notebook(cells=[
        new_code_cell("import torch\nimport torch.nn.functional as F\n"
                      "from labkit.checks import check_dice_iou, check_mask_at_photo_size"),
        answer("dice_iou", f"def dice_per_image(logits, target, threshold=0.5):\n    ### BEGIN SOLUTION\n{dice_body}\n"
                           f"    ### END SOLUTION\n\n\ndef iou_per_image(logits, target, threshold=0.5):\n"
                           f"    ### BEGIN SOLUTION\n{iou_body}\n    ### END SOLUTION"),
        check("check_dice_iou", 2, "check_dice_iou(dice_per_image, iou_per_image)",
              "check_dice_iou(dice_per_image, iou_per_image, seed=1)"),
        answer("mask", f"def mask_at_photo_size(logits, height, width, threshold=0.5):\n    ### BEGIN SOLUTION\n"
                       f"{mask_body}\n    ### END SOLUTION"),
        check("check_mask", 1, "check_mask_at_photo_size(mask_at_photo_size)", "check_mask_at_photo_size(mask_at_photo_size, seed=1)"),
    ])


@pytest.fixture(scope="module")
def masters(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("masters")
    nbformat.write(masks_master(), folder / "00_masks.ipynb")
    nbformat.write(metrics_master(), folder / "01_metrics.ipynb")
    return folder


@pytest.fixture(scope="module")
def released(masters, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    release(masters, folder)
    return folder


def points(scores) -> dict:
    return {(score.notebook, score.grade_id): score.points for score in scores}


def with_answer(source_dir: Path, target_dir: Path, notebook: str, grade_id: str, source: str) -> Path:
    """A copy of the notebooks in `source_dir` with one answer cell's source replaced."""
    shutil.copytree(source_dir, target_dir)
    student = nbformat.read(target_dir / notebook, as_version=4)
    for cell in student.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
    nbformat.write(student, target_dir / notebook)
    return target_dir


@pytest.fixture(scope="module")
def master_scores(masters):
    return grade(masters, masters, timeout=120)


@pytest.fixture(scope="module")
def release_scores(masters, released):
    return grade(released, masters, timeout=120)


# --- release ----------------------------------------------------------------------------------------------------

def test_release_removes_every_solution_line(masters, released):
    text = "".join(path.read_text() for path in released.glob("*.ipynb"))
    for line in [TRIMAP_SOLUTION, *DICE_SOLUTION, "### BEGIN SOLUTION", "### END SOLUTION"]:
        assert line.strip() not in text


def test_release_stubs_each_answer_at_its_indentation(released):
    answer_cell = nbformat.read(released / "00_masks.ipynb", as_version=4).cells[2]
    assert answer_cell.source.endswith("    # YOUR CODE HERE\n    raise NotImplementedError()")


def test_release_removes_hidden_checks_and_keeps_public_ones(released):
    check_cell = nbformat.read(released / "00_masks.ipynb", as_version=4).cells[3]
    assert check_cell.source == "check_trimap_to_mask(trimap_to_mask)"


def test_release_is_valid_nbformat_with_nbgrader_metadata(released):
    for path in released.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        graded = [cell.metadata["nbgrader"] for cell in notebook.cells if "nbgrader" in cell.metadata]
        assert all(meta["schema_version"] == 3 and {"grade", "solution", "locked", "grade_id"} <= set(meta)
                   for meta in graded)


def test_release_clears_outputs(tmp_path):
    master = masks_master()
    master.cells[1].outputs = [nbformat.v4.new_output("stream", text="stale")]
    master.cells[1].execution_count = 3
    released = release_notebook(master)
    assert all(cell.outputs == [] and cell.execution_count is None for cell in released.cells if cell.cell_type == "code")


def test_release_refuses_an_unclosed_solution_region():
    master = masks_master()
    master.cells[2].source = master.cells[2].source.replace("    ### END SOLUTION", "")
    with pytest.raises(ValueError, match="never closed"):
        release_notebook(master, "00_masks.ipynb")


def test_release_refuses_a_check_cell_without_points():
    master = masks_master()
    del master.cells[3].metadata["nbgrader"]["points"]
    with pytest.raises(ValueError, match="has no points"):
        release_notebook(master, "00_masks.ipynb")


def test_released_notebook_runs_up_to_its_first_check(released, tmp_path):
    notebook = nbformat.read(released / "00_masks.ipynb", as_version=4)
    outcome = execute_cells(notebook, timeout=60, env=kernel_environment(tmp_path), cwd=tmp_path)
    assert list(outcome) == [3]  # only the check cell fails: the exercise is not written yet
    assert "not written yet" in outcome[3]


# --- grading ----------------------------------------------------------------------------------------------------

def test_grading_the_masters_gives_full_marks(master_scores):
    assert points(master_scores) == POINTS


def test_grading_the_untouched_release_gives_zero_on_every_exercise(release_scores):
    assert points(release_scores) == dict.fromkeys(POINTS, 0)
    assert all("not written yet" in score.detail for score in release_scores)


def test_one_wrong_answer_loses_exactly_that_exercises_points(masters, released, tmp_path):
    submission = with_answer(masters, tmp_path / "student", "01_metrics.ipynb", "dice_iou",
                             WRONG_DICE + "\n\n\niou_per_image = None")
    scores = points(grade(submission, masters, timeout=120))
    assert scores == {**POINTS, ("01_metrics.ipynb", "check_dice_iou"): 0}


@pytest.fixture(scope="module")
def partial_scores(masters, tmp_path_factory):
    """A student who handed in only 01, with its check cells deleted and a wrong mask_at_photo_size."""
    submission = tmp_path_factory.mktemp("partial")
    student = metrics_master()
    student.cells = [cell for cell in student.cells if cell.metadata.get("nbgrader", {}).get("grade") is not True]
    student.cells[2].source = "def mask_at_photo_size(logits, height, width, threshold=0.5):\n    return None"
    nbformat.write(student, submission / "01_metrics.ipynb")
    return grade(submission, masters, timeout=120)


@pytest.fixture(scope="module")
def broken_scores(masters, tmp_path_factory):
    """00 hangs in its answer cell; 01 kills its kernel in its second answer cell."""
    submission = tmp_path_factory.mktemp("broken") / "student"
    with_answer(masters, submission, "00_masks.ipynb", "trimap_to_mask", "import time\ntime.sleep(600)")
    with_answer(submission, submission.with_name("student2"), "01_metrics.ipynb", "mask", "import os\nos._exit(1)")
    return grade(submission.with_name("student2"), masters, timeout=HANG_LIMIT)


def test_deleted_check_cells_are_restored_from_the_master(partial_scores):
    scores = points(partial_scores)
    assert scores[("01_metrics.ipynb", "check_dice_iou")] == 2
    assert scores[("01_metrics.ipynb", "check_mask")] == 0


def test_a_missing_notebook_scores_zero_and_the_others_are_graded(partial_scores):
    assert partial_scores[0].status == "missing" and partial_scores[0].points == 0
    assert points(partial_scores)[("01_metrics.ipynb", "check_dice_iou")] == 2


def test_a_hanging_notebook_stops_at_its_time_limit_and_the_next_is_graded(broken_scores):
    assert broken_scores[0].points == 0 and f"time limit of {HANG_LIMIT} s" in broken_scores[0].detail
    assert points(broken_scores)[("01_metrics.ipynb", "check_dice_iou")] == 2


def test_a_crash_scores_zero_from_where_it_happened(broken_scores):
    assert points(broken_scores)[("01_metrics.ipynb", "check_mask")] == 0
    assert broken_scores[-1].status == "not reached" and "kernel died" in broken_scores[-1].detail


def test_scores_are_written_as_json_and_csv(master_scores, tmp_path):
    json_path, csv_path = write_scores(master_scores, tmp_path)
    assert json.loads(json_path.read_text())["total"] == sum(POINTS.values())
    assert csv_path.read_text().splitlines()[0] == "notebook,grade_id,points,max_points,status,detail"


def test_the_score_table_ends_with_the_total(release_scores):
    assert format_scores(release_scores).splitlines()[-1] == f"total: 0 / {sum(POINTS.values())}"


def test_the_release_command_writes_the_student_notebooks(masters, tmp_path, capsys):
    assert cli.main(["release", "--masters", str(masters), "--output", str(tmp_path / "out")]) == 0
    assert sorted(path.name for path in (tmp_path / "out").glob("*.ipynb")) == ["00_masks.ipynb", "01_metrics.ipynb"]


def test_the_grade_command_refuses_a_missing_folder(masters, tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path / "nowhere"), "--masters", str(masters)]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_a_failed_cell_is_summed_up_by_its_error_line_without_terminal_colours():
    error = RuntimeError("An error occurred while executing the following cell:\n------------------\nassert x\n"
                         "------------------\n\n\x1b[31mAssertionError\x1b[39m: x was 0")
    assert first_line(error) == "AssertionError: x was 0"
