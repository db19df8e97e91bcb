"""Every exercise check passes the masters' answers and right answers written differently, and
catches, publicly or in its hidden cases, the wrong answer it exists for; run here as a notebook
runs them, on answers defined in cells."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from answers import RIGHT, WRONG
from cells import master_answers, notebook_namespace, run_cell
from labkit import paths
from labkit.course import checks
from labkit.course.checks import CheckFailed
from labkit.course.exercises import EXERCISES

NOTEBOOKS = paths.project_dir() / "notebooks"
CHECKS = {  # answer grade_id -> the check its check cell calls
    "trimap_to_mask": checks.check_trimap_to_mask, "DoubleConv": checks.check_double_conv, "Down": checks.check_down,
    "Up": checks.check_up, "UNet": checks.check_unet, "BasicBlock": checks.check_basic_block,
    "make_stage": checks.check_stage_builder, "ResNet34Encoder": checks.check_resnet34_encoder,
    "ResNet34UNet": checks.check_resnet34_unet, "segmentation_loss": checks.check_loss,
    "training_step": checks.check_training_step, "train_one_epoch": checks.check_train_one_epoch,
    "dice_iou": checks.check_dice_iou, "mask_at_photo_size": checks.check_mask_at_photo_size,
}


def run_check(exercise_id: str, namespace: dict, **options) -> str:
    """The check of `exercise_id` on the names its answer defined in `namespace`; what it printed."""
    names = [namespace[name] for name in EXERCISES[exercise_id].defines]
    CHECKS[exercise_id](*names, **options)


def failure(exercise_id: str, namespace: dict, **options) -> str:
    with pytest.raises(CheckFailed) as raised:
        run_check(exercise_id, namespace, **options)
    return str(raised.value)


def answered(source: str) -> dict:
    """A notebook namespace after the cell `source` ran."""
    return run_cell(source, notebook_namespace())


def test_every_exercise_of_the_workbook_has_a_check():
    assert set(CHECKS) == set(EXERCISES)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_the_masters_answer_passes_in_one_line_each_public_and_hidden(exercise_id, capsys):
    namespace = answered(master_answers(NOTEBOOKS / EXERCISES[exercise_id].notebook)[exercise_id])
    run_check(exercise_id, namespace)
    for seed in (1, 2):
        run_check(exercise_id, namespace, hidden=True, seed=seed)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("All ") and line.endswith("checks passed.") for line in lines)
    assert "further" in lines[1]


@pytest.mark.parametrize("answer", RIGHT, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_a_right_answer_written_differently_passes(answer):
    namespace = answered(answer.source)
    run_check(answer.exercise, namespace)
    run_check(answer.exercise, namespace, hidden=True, seed=3)


@pytest.mark.parametrize("answer", WRONG, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_a_wrong_answer_fails_naming_its_case(answer):
    namespace = answered(answer.source)
    if answer.caught_by == "hidden":
        run_check(answer.exercise, namespace)  # the public cases do not show this mistake
        message = failure(answer.exercise, namespace, hidden=True, seed=5)
    else:
        message = failure(answer.exercise, namespace)
    assert answer.message in message, message
    if "failed the case" in message:
        assert "expected:" in message and "got:" in message and "hint:" in message


def test_no_message_shows_a_line_of_a_masters_answer():
    solution_lines = {line.strip() for exercise_id, exercise in EXERCISES.items()
                      for line in master_answers(NOTEBOOKS / exercise.notebook)[exercise_id].splitlines()
                      if len(line.strip()) >= 20 and not line.strip().startswith(("#", '"""', "def ", "class "))}
    for answer in WRONG:
        namespace = answered(answer.source)
        try:
            run_check(answer.exercise, namespace, hidden=answer.caught_by == "hidden", seed=5)
        except CheckFailed as failed:
            shown = [line for line in solution_lines if line in str(failed)]
            assert not shown, (answer.label, shown)


def test_no_line_of_the_checks_code_is_a_line_of_a_masters_answer():
    """A traceback or a curious student reading labkit/course/ must not find the answer written out."""
    solution_lines = {line.strip().split("  #")[0] for exercise_id, exercise in EXERCISES.items()
                      for line in master_answers(NOTEBOOKS / exercise.notebook)[exercise_id].splitlines()
                      if len(line.strip()) >= 25 and not line.strip().startswith(("#", '"""', "def ", "class "))}
    course = Path(checks.__file__).resolve().parents[1]
    copied = [(path.name, line.strip()) for path in course.rglob("*.py") for line in path.read_text().splitlines()
              if line.strip().split("  #")[0] in solution_lines]
    assert not copied, copied


def test_an_exception_in_the_students_code_is_one_line_naming_what_was_done():
    answer = next(answer for answer in WRONG if answer.label == "raises inside forward")
    message = failure("DoubleConv", answered(answer.source))
    assert message == ("your DoubleConv raised RuntimeError: mat1 and mat2 shapes cannot be multiplied when built as "
                       "DoubleConv(3, 8), on inputs of shape [(1, 3, 37, 51)]")
    assert "\n" not in message and "second line" not in message


def test_an_unwritten_exercise_says_so():
    namespace = answered("def trimap_to_mask(trimap):\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    assert "trimap_to_mask is not written yet" in failure("trimap_to_mask", namespace)


def test_a_failure_renders_in_ipython_without_a_traceback():
    wrong = next(answer for answer in WRONG if answer.label == "border counted as background")
    with pytest.raises(CheckFailed) as raised:
        run_check("trimap_to_mask", answered(wrong.source))
    lines = raised.value._render_traceback_()
    assert lines[0].startswith("CheckFailed: trimap_to_mask failed the case")
    assert not any("Traceback" in line or "File " in line for line in lines)


def test_a_check_restores_the_thread_count():
    threads = torch.get_num_threads()
    run_check("trimap_to_mask", answered(master_answers(NOTEBOOKS / "00_data_exploration.ipynb")["trimap_to_mask"]))
    assert torch.get_num_threads() == threads


# --- the answer must be the student's --------------------------------------------------------------------------

def test_labkits_own_class_earns_nothing():
    namespace = answered("from labkit import models")
    message = failure("UNet", {**namespace, "UNet": namespace["models"].UNet})
    assert message.startswith("your UNet is labkit's own labkit.models.unet.UNet")


def test_a_subclass_of_labkits_class_earns_nothing():
    namespace = notebook_namespace()
    namespace["LabkitDoubleConv"] = __import__("labkit.models.unet", fromlist=["DoubleConv"]).DoubleConv
    run_cell("class DoubleConv(LabkitDoubleConv):\n    pass", namespace)
    assert "is built on labkit's own labkit.models.unet.DoubleConv" in failure("DoubleConv", namespace)


def test_labkits_function_by_another_name_earns_nothing():
    namespace = answered("from labkit.train import training_step")
    namespace["my_training_step"] = namespace["training_step"]
    assert "is labkit's own labkit.train.training_step" in failure("training_step", namespace)


def test_an_answer_calling_labkits_version_earns_nothing():
    namespace = answered("def dice_per_image(logits, truth, threshold=0.5):\n    return metrics.dice_per_image(logits, truth, threshold)\n"
                         "def iou_per_image(logits, truth, threshold=0.5):\n    return metrics.iou_per_image(logits, truth, threshold)")
    message = failure("dice_iou", namespace)
    assert message.startswith("your dice_per_image cannot earn points: its cell line 2 uses `metrics` beyond")


def test_an_object_that_is_not_a_function_or_class_is_not_an_answer():
    namespace = notebook_namespace()
    namespace["trimap_to_mask"] = functools.partial(np.isin, test_elements=(1, 3))
    assert failure("trimap_to_mask", namespace) == ("your trimap_to_mask is a partial, not a function or class defined "
                                                    "with def or class in its answer cell")


# --- one mistake, one loss --------------------------------------------------------------------------------------

def test_a_wrong_block_costs_only_its_own_exercise():
    """A BasicBlock without its last ReLU fails BasicBlock; make_stage, the encoder and the
    ResNet34-UNet built on it pass, since labkit's BasicBlock stands in while they are checked."""
    namespace = notebook_namespace()
    wrong_block = next(answer for answer in WRONG if answer.label == "no ReLU after the sum")
    run_cell(wrong_block.source, namespace)
    answers = master_answers(NOTEBOOKS / "02_resnet34_unet.ipynb")
    for exercise_id in ("make_stage", "ResNet34Encoder", "ResNet34UNet"):
        run_cell(answers[exercise_id], namespace)
    failure("BasicBlock", namespace)
    for exercise_id in ("make_stage", "ResNet34Encoder", "ResNet34UNet"):
        run_check(exercise_id, namespace)
    assert namespace["BasicBlock"].__module__ == "__main__"  # the student's own is back after the checks
