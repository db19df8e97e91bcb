"""The judge decides each check cell's grade in its own process, from what a runner process holding
the student's answer reports: right answers pass, wrong ones fail with the check's message, tricks
score 0 with the reason, and nothing an answer does to its own process changes a grade."""

import os
import signal
import tempfile

import nbformat
import pytest

from answers import RIGHT, TRICKS, WRONG
from labkit import paths
from labkit.course import judge as judge_module
from labkit.course.exercises import EXERCISES
from labkit.course.judge import Judge, RunnerSlot
from labkit.course.masters import nbgrader

NOTEBOOKS = paths.project_dir() / "notebooks"


@pytest.fixture(scope="module")
def runners():
    with RunnerSlot(timeout=60) as slot:
        yield slot


def verdict(runners, exercise_id: str, answers: dict[str, str], check_id: str | None = None):
    """The judge's verdict on the check cell of `check_id` (default: the exercise's own) in its master."""
    exercise = EXERCISES[exercise_id]
    master = nbformat.read(NOTEBOOKS / exercise.notebook, as_version=4)
    check_id = check_id or exercise.check
    index = next(i for i, cell in enumerate(master.cells) if nbgrader(cell).get("grade_id") == check_id)
    return Judge(master, answers, runners).judge_cell(index)


@pytest.mark.parametrize("answer", RIGHT, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_a_right_answer_written_differently_passes(runners, answer):
    result = verdict(runners, answer.exercise, {answer.exercise: answer.source})
    assert result.passed, result.detail
    assert "further" in result.output  # the hidden cases ran too


@pytest.mark.parametrize("answer", WRONG, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_a_wrong_answer_fails_with_the_checks_message(runners, answer):
    result = verdict(runners, answer.exercise, {answer.exercise: answer.source})
    assert result.passed is False and answer.message in result.detail, result.detail


@pytest.mark.parametrize("answer", TRICKS, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_a_trick_scores_nothing_and_says_what_it_used(runners, answer):
    result = verdict(runners, answer.exercise, {answer.exercise: answer.source})
    assert result.passed is False and answer.message in result.detail, result.detail
    assert "cannot earn points" in result.detail


def test_an_answer_missing_from_the_submission_fails_as_not_written(runners):
    result = verdict(runners, "UNet", {})
    assert result.passed is False and "UNet is not written yet" in result.detail


# --- the second wall: with the screen out of the way, the answer still cannot change its grade -------------------

SWITCH_OFF = """
import torch
checks = None
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.__sub__ = lambda self, other: torch.zeros_like(self)

class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))
"""


@pytest.fixture
def unscreened(monkeypatch):
    """The judge with its screen switched off, as if a trick had found a way past it."""
    monkeypatch.setattr(judge_module, "screen", lambda source, rules: None)


def test_patching_its_own_process_does_not_change_the_grade(runners, unscreened):
    result = verdict(runners, "DoubleConv", {"DoubleConv": SWITCH_OFF})
    assert result.passed is False and "DoubleConv failed the case" in result.detail, result.detail


@pytest.mark.parametrize("source, error", [
    ("import os\nDoubleConv = os.getpid", "an answer may not import os"),
    ("DoubleConv = open('/etc/hostname').read", "NameError: name 'open' is not defined"),
    ("DoubleConv = models.unet.DoubleConv", "NameError: name 'models' is not defined"),
    ("DoubleConv = checks", "NameError: name 'checks' is not defined"),
    ("DoubleConv = getattr(torch, '__class__')", "may not use the attribute '__class__'"),
])
def test_what_the_screen_refuses_cannot_run_in_the_runner_either(runners, unscreened, source, error):
    result = verdict(runners, "DoubleConv", {"DoubleConv": source})
    assert result.passed is False and error in result.detail, result.detail


def test_labkit_modules_an_answer_may_touch_hold_only_the_allowed_members(runners, unscreened):
    source = ("def dice_per_image(logits, truth, threshold=0.5):\n    return metrics.dice_per_image(logits, truth, threshold)\n"
              "def iou_per_image(logits, truth, threshold=0.5):\n    return metrics.iou_per_image(logits, truth, threshold)")
    result = verdict(runners, "dice_iou", {"dice_iou": source})
    assert result.passed is False and "has no attribute 'dice_per_image'" in result.detail, result.detail


# --- one mistake, one loss ---------------------------------------------------------------------------------------

def test_a_wrong_block_costs_only_its_own_exercise(runners):
    wrong_block = next(answer for answer in WRONG if answer.label == "no ReLU after the sum").source
    answers = {"BasicBlock": wrong_block}  # the later answers are the masters' own
    master = nbformat.read(NOTEBOOKS / "02_resnet34_unet.ipynb", as_version=4)
    from labkit.course.masters import SOLUTION, is_answer, without_markers

    answers.update({nbgrader(cell)["grade_id"]: without_markers(cell.source, SOLUTION) for cell in master.cells
                    if is_answer(cell) and nbgrader(cell)["grade_id"] != "BasicBlock"})
    results = Judge(master, answers, runners).judge()
    assert {result.grade_id: result.passed for result in results} == {
        "check_BasicBlock": False, "check_make_stage": True, "check_ResNet34Encoder": True, "check_ResNet34UNet": True}


def test_a_syntax_error_is_reported_in_its_own_exercise_only(runners):
    down = "class Down(nn.Sequential):\n    def __init__(self, in_channels, out_channels)\n        super().__init__()"
    from cells import master_answers

    answers = {**master_answers(NOTEBOOKS / "01_unet_from_scratch.ipynb"), "Down": down}
    master = nbformat.read(NOTEBOOKS / "01_unet_from_scratch.ipynb", as_version=4)
    results = {result.grade_id: result for result in Judge(master, answers, runners).judge()}
    assert results["check_Down"].passed is False
    assert "SyntaxError on line 2 of the answer cell" in results["check_Down"].detail
    assert results["check_UNet"].passed and results["check_Up"].passed and results["check_DoubleConv"].passed


# --- runners that hang or die ---------------------------------------------------------------------------------------

def judged_unet_notebook(double_conv: str, timeout: float) -> dict:
    """01's verdicts for the masters' answers with `double_conv` as the DoubleConv answer."""
    from cells import master_answers

    answers = {**master_answers(NOTEBOOKS / "01_unet_from_scratch.ipynb"), "DoubleConv": double_conv}
    master = nbformat.read(NOTEBOOKS / "01_unet_from_scratch.ipynb", as_version=4)
    with RunnerSlot(timeout=timeout) as slot:
        return {result.grade_id: result for result in Judge(master, answers, slot).judge()}


def test_an_answer_that_hangs_fails_its_check_and_the_next_check_gets_a_fresh_runner():
    hang = "class DoubleConv(nn.Sequential):\n    def __init__(self, a, b, c=None):\n        while True:\n            pass"
    results = judged_unet_notebook(hang, timeout=5)
    assert results["check_DoubleConv"].passed is False
    assert "ran for more than 5 s" in results["check_DoubleConv"].detail
    assert results["check_Down"].passed and results["check_UNet"].passed


def test_a_runners_working_folder_is_removed_once_it_is_closed_or_found_dead(tmp_path, monkeypatch):
    """Runners are killed when an answer hangs: the folder each ran in is the judge's to remove."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with RunnerSlot(timeout=5) as slot:
        dead = slot.get()
        assert dead.folder.parent == tmp_path and dead.folder.is_dir()
        os.killpg(dead.process.pid, signal.SIGKILL)
        dead.process.wait()
        fresh = slot.get()
        assert fresh is not dead and not dead.folder.exists()
    assert not fresh.folder.exists() and not list(tmp_path.iterdir())


def test_an_answer_whose_process_dies_fails_its_check_and_the_next_check_gets_a_fresh_runner(unscreened):
    results = judged_unet_notebook("torch.sys.exit(3)", timeout=30)
    assert results["check_DoubleConv"].passed is False
    assert "died while running the answer cell (exit code 3)" in results["check_DoubleConv"].detail
    assert results["check_Down"].passed and results["check_UNet"].passed
