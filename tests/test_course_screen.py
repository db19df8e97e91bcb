"""The screen reads an answer cell before anything runs it: it lets right answers through and
refuses every way of earning marks without writing the answer, saying what was used."""

import ast

import nbformat
import pytest

from answers import RIGHT, TRICKS, WRONG
from cells import master_answers
from labkit import paths
from labkit.course.exercises import EXERCISES
from labkit.course.masters import is_solution
from labkit.course.screen import AnswerRefused, Rules, notebook_names, runtime_builtins, screen

NOTEBOOKS = paths.project_dir() / "notebooks"


def rules(exercise_id: str) -> Rules:
    """The rules the judge applies: the exercise's, with the names of its master notebook reserved."""
    exercise = EXERCISES[exercise_id]
    master = nbformat.read(NOTEBOOKS / exercise.notebook, as_version=4)
    return Rules.for_exercise(exercise, notebook_names(cell.source for cell in master.cells
                                                       if cell.cell_type == "code" and not is_solution(cell)))


def refusal(exercise_id: str, source: str) -> str:
    with pytest.raises(AnswerRefused) as raised:
        screen(source, rules(exercise_id))
    return str(raised.value)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_the_masters_answers_pass(exercise_id):
    notebook = NOTEBOOKS / EXERCISES[exercise_id].notebook
    screen(master_answers(notebook)[exercise_id], rules(exercise_id))


@pytest.mark.parametrize("answer", RIGHT + WRONG, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_answers_that_only_make_mistakes_pass_the_screen(answer):
    screen(answer.source, rules(answer.exercise))  # their mistakes are for the checks to find


@pytest.mark.parametrize("answer", TRICKS, ids=lambda answer: f"{answer.exercise}: {answer.label}")
def test_every_trick_is_refused_naming_what_it_used(answer):
    message = refusal(answer.exercise, answer.source)
    assert answer.message in message, message
    assert message.startswith("line ") and "\n" not in message


def test_a_syntax_error_is_reported_as_one_with_its_line():
    assert refusal("Down", "class Down(nn.Sequential):\n    def __init__(self, a, b)\n        pass").startswith(
        "SyntaxError on line 2 of the answer cell")


def test_a_refusal_lists_what_the_exercise_allows():
    message = refusal("UNet", "UNet = models.UNet")
    for name in ("`DoubleConv`", "`Down`", "`Up`", "`pad_to_multiple`", "`init_weights`"):
        assert name in message


def test_only_the_allowed_member_of_a_labkit_module_may_be_used():
    screen("def dice_per_image(logits, truth, threshold=0.5):\n    return truth != metrics.IGNORE_INDEX\n"
           "def iou_per_image(logits, truth, threshold=0.5):\n    return truth", rules("dice_iou"))
    assert "`metrics.IGNORE_INDEX`" in refusal("dice_iou", "def dice_per_image(l, t, threshold=0.5):\n"
                                                           "    return metrics.predict_mask(l)")


def test_an_answer_may_import_the_notebooks_modules_again_under_their_usual_names():
    screen("import torch\nimport torch.nn.functional as F\nfrom torch import nn, Tensor\nimport numpy as np\n"
           "def trimap_to_mask(trimap):\n    return np.isin(trimap, (1, 3)).astype(np.uint8)", rules("trimap_to_mask"))
    assert "rebinds `torch`" in refusal("trimap_to_mask", "import numpy as torch")


def test_getattr_is_allowed_on_self_and_with_literal_names():
    screen("class DoubleConv(nn.Sequential):\n    def forward(self, x):\n        for i in range(6):\n"
           "            x = getattr(self, str(i))(x)\n        return getattr(x, 'float')()", rules("DoubleConv"))


def test_locals_may_reuse_names_the_notebook_uses():
    screen("def trimap_to_mask(trimap):\n    data = trimap.copy()\n    checks = data == 2\n"
           "    return (~checks).astype(np.uint8)", rules("trimap_to_mask"))


@pytest.mark.parametrize("name", ["open", "exec", "eval", "compile", "globals", "vars", "input", "breakpoint"])
def test_the_runners_builtins_lack_what_runs_text_or_reaches_outside(name):
    assert name not in runtime_builtins(lambda module: True)


def test_the_runners_getattr_refuses_private_and_denied_names():
    builtins = runtime_builtins(lambda module: True)
    with pytest.raises(AttributeError, match="may not use the attribute '__class__'"):
        builtins["getattr"](1, "__class__")
    with pytest.raises(AttributeError, match="'sys'"):
        builtins["getattr"](ast, "sys")
    with pytest.raises(ImportError, match="may not import os"):
        builtins["__import__"]("os")
    assert builtins["getattr"](ast, "parse") is ast.parse


def test_a_module_the_answer_may_import_must_be_imported_in_its_cell():
    source = "def segmentation_loss(logits, masks):\n    return math.sqrt(2)"
    assert "uses `math` without importing it: write `import math` in the answer cell" in refusal("segmentation_loss", source)
    screen("import math\n" + source, rules("segmentation_loss"))
