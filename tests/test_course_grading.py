"""Grading a class: each student judged and run in a worker of their own, a gradebook, feedback,
results written as they come, and nothing one student's notebooks do stopping the others.

Two small masters stand in for the workbook (three autograded exercises graded by labkit's checks,
one check cell of a lecturer's own that the notebook run grades, one written question). Each
grading run starts fresh kernels, so one class is graded once and shared by the tests that read it.
"""

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import cli
from labkit.course.grade import GradeSettings, grade_class, grade_student
from labkit.course.masters import mark_exercise
from labkit.course.release import release

IMPORTS = "import numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom labkit import metrics\nfrom labkit.course import checks"
TRIMAP = "    return np.isin(trimap, (1, 3)).astype(np.uint8)"
DICE = """
    logits = logits[:, 0] if logits.dim() == 4 else logits
    scored = truth != metrics.IGNORE_INDEX
    predicted, pet = (torch.sigmoid(logits) > threshold) & scored, (truth == 1) & scored
    tp, fp, fn = ((predicted & pet).sum((1, 2)).float(), (predicted & ~pet).sum((1, 2)).float(),
                  (~predicted & pet).sum((1, 2)).float())"""
POINTS = {("00_masks.ipynb", "check_trimap_to_mask"): 1, ("00_masks.ipynb", "check_own"): 1,
          ("01_metrics.ipynb", "check_dice_iou"): 2, ("01_metrics.ipynb", "check_mask_at_photo_size"): 1}
WRITTEN = ("00_masks.ipynb", "border_question")


def answer(grade_id: str, source: str):
    return mark_exercise(new_code_cell(source), grade_id, "answer")


def check(grade_id: str, points: float, public: str, hidden: str):
    return mark_exercise(new_code_cell(f"{public}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS"), grade_id,
                         "check", points=points)


def masks_master(extra_cells=()):
    return new_notebook(cells=[
        new_markdown_cell("# Masks\nWrite `trimap_to_mask`: 1 and 3 are pet, 2 is background."),
        mark_exercise(new_code_cell(IMPORTS), "imports_00", "readonly"),
        answer("trimap_to_mask", f"def trimap_to_mask(trimap):\n    ### BEGIN SOLUTION\n{TRIMAP}\n    ### END SOLUTION"),
        check("check_trimap_to_mask", 1, "checks.check_trimap_to_mask(trimap_to_mask)",
              "checks.check_trimap_to_mask(trimap_to_mask, hidden=True)"),
        check("check_own", 1, "assert trimap_to_mask(np.array([[3]]))[0, 0] == 1",
              "assert trimap_to_mask(np.array([[2]]))[0, 0] == 0  # the lecturer's hidden case"),
        new_markdown_cell("**Question 1 (2 points).** Why count the border as pet?"),
        mark_exercise(new_markdown_cell("### BEGIN SOLUTION\nThe band belongs to the outline.\n### END SOLUTION"),
                      "border_question", "written", points=2),
        *extra_cells,
    ])


def metrics_master():
    dice = f"{DICE}\n    return torch.where(tp + fp + fn == 0, 1.0, 2 * tp / (2 * tp + fp + fn).clamp_min(1))"
    iou = f"{DICE}\n    return torch.where(tp + fp + fn == 0, 1.0, tp / (tp + fp + fn).clamp_min(1))"
    mask = ("    resized = F.interpolate(logits.float(), size=(height, width), mode='bilinear', align_corners=False)\n"
            "    return torch.sigmoid(resized)[:, 0] > threshold")
    return new_notebook(cells=[
        new_code_cell(IMPORTS),
        answer("dice_iou", f"def dice_per_image(logits, truth, threshold=0.5):\n    ### BEGIN SOLUTION{dice}\n"
                           "    ### END SOLUTION\n\n\ndef iou_per_image(logits, truth, threshold=0.5):\n"
                           f"    ### BEGIN SOLUTION{iou}\n    ### END SOLUTION"),
        check("check_dice_iou", 2, "checks.check_dice_iou(dice_per_image, iou_per_image)",
              "checks.check_dice_iou(dice_per_image, iou_per_image, hidden=True)"),
        answer("mask_at_photo_size", "def mask_at_photo_size(logits, height, width, threshold=0.5):\n"
                                     f"    ### BEGIN SOLUTION\n{mask}\n    ### END SOLUTION"),
        check("check_mask_at_photo_size", 1, "checks.check_mask_at_photo_size(mask_at_photo_size)",
              "checks.check_mask_at_photo_size(mask_at_photo_size, hidden=True)"),
    ])


def write_masters(folder: Path, masks=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(masks or masks_master(), folder / "00_masks.ipynb")
    nbformat.write(metrics_master(), folder / "01_metrics.ipynb")
    return folder


def with_answer(source_dir: Path, target_dir: Path, notebook: str, grade_id: str, source: str) -> Path:
    """A copy of the notebooks in `source_dir` with one solution cell's source replaced."""
    if source_dir != target_dir:
        shutil.copytree(source_dir, target_dir)
    student = nbformat.read(target_dir / notebook, as_version=4)
    for cell in student.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
    nbformat.write(student, target_dir / notebook)
    return target_dir


def points(result) -> dict:
    return {(score.notebook, score.grade_id): score.points for score in result.scores if score.points is not None}


WRONG_DICE = """def dice_per_image(logits, truth, threshold=0.5):
    predicted, pet = torch.sigmoid(logits[:, 0]) > threshold, truth == 1
    return (2 * (predicted & pet).sum() / (predicted.sum() + pet.sum())).repeat(len(logits)).float()


def iou_per_image(logits, truth, threshold=0.5):
    return torch.ones(len(logits))"""
HOSTILE = "import os\nos.kill(os.getppid(), signal.SIGKILL)\ndef trimap_to_mask(trimap):\n" + TRIMAP


@pytest.fixture(scope="module")
def masters(tmp_path_factory) -> Path:
    return write_masters(tmp_path_factory.mktemp("masters"))


@pytest.fixture(scope="module")
def classroom(masters, tmp_path_factory):
    """Four students graded two at a time: all right, the untouched release, one wrong Dice, one hostile answer."""
    room = tmp_path_factory.mktemp("class")
    shutil.copytree(masters, room / "ada")
    release(masters, room / "bert")
    with_answer(masters, room / "cleo", "01_metrics.ipynb", "dice_iou", WRONG_DICE)
    with_answer(masters, room / "dora", "00_masks.ipynb", "trimap_to_mask", HOSTILE)
    with_answer(room / "dora", room / "dora", "00_masks.ipynb", "border_question", "The band is part of the pet.")
    started = time.perf_counter()
    results = grade_class(room, masters, jobs=2, timeout=120, report=lambda line: None)
    return room, {result.student: result for result in results}, time.perf_counter() - started


def test_the_masters_earn_full_marks_and_the_written_answer_waits_for_a_marker(classroom):
    _, results, _ = classroom
    assert points(results["ada"]) == POINTS
    written = [score for score in results["ada"].scores if (score.notebook, score.grade_id) == WRITTEN]
    assert [(score.points, score.max_points, score.status) for score in written] == [(None, 2, "to be marked by hand")]
    assert results["ada"].manual_max == 2 and results["ada"].total == sum(POINTS.values())


def test_the_untouched_release_earns_nothing(classroom):
    _, results, _ = classroom
    assert points(results["bert"]) == dict.fromkeys(POINTS, 0)
    judged = [score for score in results["bert"].scores if score.grade_id.startswith("check_") and score.grade_id != "check_own"]
    assert all("not written yet" in score.detail for score in judged)


def test_one_wrong_answer_loses_exactly_its_points(classroom):
    _, results, _ = classroom
    assert points(results["cleo"]) == {**POINTS, ("01_metrics.ipynb", "check_dice_iou"): 0}


def test_a_hostile_answer_scores_nothing_is_never_run_and_the_class_is_graded(classroom):
    room, results, _ = classroom
    dora = points(results["dora"])
    assert dora[("00_masks.ipynb", "check_trimap_to_mask")] == 0
    assert dora[("01_metrics.ipynb", "check_dice_iou")] == 2  # the rest of the student is graded
    detail = next(s.detail for s in results["dora"].scores if s.grade_id == "check_trimap_to_mask")
    assert "cannot earn points" in detail and "imports os" in detail
    executed = nbformat.read(room / "graded" / "students" / "dora" / "notebooks" / "00_masks.ipynb", as_version=4)
    assert executed.cells[2].source.startswith("# Not run when graded: line 1 imports os")


def test_a_lecturers_own_check_cell_is_graded_by_the_notebook_run(classroom):
    _, results, _ = classroom
    assert points(results["ada"])[("00_masks.ipynb", "check_own")] == 1
    assert points(results["bert"])[("00_masks.ipynb", "check_own")] == 0


def test_the_feedback_copies_hold_no_hidden_test(classroom):
    room, _, _ = classroom
    for path in (room / "graded" / "students").rglob("*.ipynb"):
        text = path.read_text()
        assert "HIDDEN TESTS" not in text and "the lecturer's hidden case" not in text and "hidden=True" not in text


def test_the_gradebook_has_a_row_per_student_and_exercise(classroom):
    room, _, _ = classroom
    with (room / "graded" / "gradebook.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["student", "notebook", "exercise", "points", "max", "status", "detail"]
    assert {row["student"] for row in rows} == {"ada", "bert", "cleo", "dora"}
    assert len(rows) == 4 * (len(POINTS) + 1)
    cleo = {row["exercise"]: row for row in rows if row["student"] == "cleo"}
    assert cleo["check_dice_iou"]["points"] == "0" and cleo["check_dice_iou"]["status"] == "failed"
    assert cleo["check_dice_iou"]["detail"].startswith("dice_per_image failed the case")
    assert cleo["border_question"]["points"] == "" and cleo["border_question"]["status"] == "to be marked by hand"
    totals = json.loads((room / "graded" / "grades.json").read_text())["students"]
    assert totals["ada"]["total"] == sum(POINTS.values()) and totals["ada"]["manual_max"] == 2


def test_each_student_gets_feedback_with_each_checks_message_and_their_written_answer(classroom):
    room, _, _ = classroom
    feedback = (room / "graded" / "students" / "cleo" / "feedback.md").read_text()
    assert "Autograded: 3 of 5 points; 2 more to be marked by hand." in feedback
    assert "dice_per_image failed the case" in feedback and "hint:" in feedback
    assert "The band is part of the pet." in (room / "graded" / "students" / "dora" / "feedback.md").read_text()


def test_a_second_run_skips_students_already_graded_and_regrades_one_that_changed(classroom, masters):
    room, first, _ = classroom
    with_answer(room / "bert", room / "bert", "00_masks.ipynb", "trimap_to_mask", "def trimap_to_mask(trimap):\n" + TRIMAP)
    lines = []
    results = {r.student: r for r in grade_class(room, masters, jobs=2, timeout=120, checks_only=True, report=lines.append)}
    assert sorted(line for line in lines if "up to date" in line) == [
        f"{name}: up to date, {first[name].total:g} / {first[name].autograded_max:g}" for name in ("ada", "cleo", "dora")]
    assert points(results["bert"])[("00_masks.ipynb", "check_trimap_to_mask")] == 1


# --- faults ------------------------------------------------------------------------------------------------------

def test_a_hang_stops_at_its_time_limit_naming_the_cell_and_the_rest_is_graded(masters, tmp_path):
    student = with_answer(masters, tmp_path / "hanging", "00_masks.ipynb", "trimap_to_mask",
                          "def trimap_to_mask(trimap):\n    while True:\n        pass")
    settings = GradeSettings(masters, timeout=9, probe_seconds=3)
    result = grade_student(student, tmp_path / "out", settings)
    by_id = {score.grade_id: score for score in result.scores}
    assert by_id["check_trimap_to_mask"].points == 0 and "ran for more than 3 s" in by_id["check_trimap_to_mask"].detail
    assert by_id["check_own"].status == "not reached" and "cell 3 (check_trimap_to_mask) ran past the notebook's time limit of 9 s" in by_id["check_own"].detail
    assert by_id["check_dice_iou"].points == 2  # the next notebook runs in a kernel of its own
    assert any("cell 3 (check_trimap_to_mask) ran past" in problem for problem in result.notebook_problems)


def test_a_crashed_kernel_and_the_processes_a_notebook_left_behind_are_dealt_with(tmp_path):
    """A master whose last cell starts a detached process and kills its kernel: the cells after it
    are not reached, and the detached process is gone when grading ends."""
    crash = new_code_cell("import os, subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\nos._exit(1)")
    masters = write_masters(tmp_path / "masters", masks_master([mark_exercise(crash, "crash", "readonly"),
                                                                check("check_after", 1, "pass", "pass")]))
    result = grade_student(masters, tmp_path / "out", GradeSettings(masters, timeout=60))
    after = next(score for score in result.scores if score.grade_id == "check_after")
    assert after.status == "not reached" and "kernel died in cell 7 (crash)" in after.detail
    sleepers = [entry for entry in Path("/proc").glob("[0-9]*") if (entry / "cmdline").is_file()
                and (entry / "cmdline").read_bytes().startswith(b"sleep\x00300")]
    assert not sleepers


def test_missing_unreadable_and_fifo_notebooks_score_nothing_without_stopping_grading(masters, tmp_path):
    student = tmp_path / "student"
    student.mkdir()
    os.mkfifo(student / "00_masks.ipynb")
    (student / "01_metrics.ipynb").write_text("{not json")
    result = grade_student(student, tmp_path / "out", GradeSettings(masters, checks_only=True))
    assert all(score.status == "missing" and not score.points for score in result.scores)
    assert any("could not be read" in score.detail for score in result.scores)


def test_a_worker_killed_midway_is_reported_and_the_others_are_graded(masters, tmp_path):
    room = tmp_path / "class"
    for name in ("anna", "ben"):
        shutil.copytree(masters, room / name)
    killed = threading.Event()

    def kill_annas_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed.is_set():
            for entry in Path("/proc").glob("[0-9]*"):
                try:
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"labkit.course.grade" in command and str(room / "anna").encode() in command:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.set()
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_annas_worker)
    killer.start()
    results = {r.student: r for r in grade_class(room, masters, jobs=1, checks_only=True, report=lambda line: None)}
    killer.join()
    assert killed.is_set()
    assert results["anna"].total == 0 and "grading crashed" in results["anna"].scores[0].detail
    assert points(results["ben"])[("01_metrics.ipynb", "check_dice_iou")] == 2
    assert json.loads((room / "graded" / "students" / "anna" / "result.json").read_text())["total"] == 0


def test_the_grade_command_refuses_a_missing_folder_and_a_bad_timeout(masters, tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path / "nowhere"), "--masters", str(masters)]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["grade", str(masters), "--masters", str(masters), "--timeout", "0"]) == 1
    assert "--timeout must be a positive number" in capsys.readouterr().err


def test_the_grade_command_prints_a_students_table_and_writes_the_gradebook(masters, tmp_path, capsys):
    student = shutil.copytree(masters, tmp_path / "solo")
    assert cli.main(["grade", str(student), "--masters", str(masters), "--checks-only"]) == 0
    output = capsys.readouterr().out
    assert "total: 4 / 5 (+ 2 to be marked by hand)" in output
    assert "check_own" in output and "not graded: a check only the notebook run can grade" in output
    assert (student / "graded" / "gradebook.csv").is_file()
