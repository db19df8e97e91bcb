"""The workbook as a lab: its seven notebooks are masters whose exercises a student can do from
the prompts alone, whose release holds nothing of the answers, and whose grading gives full marks
to the masters and nothing to the untouched release."""

import io
import re
import contextlib

import nbformat
import pytest

from cells import master_answers, notebook_namespace, run_cell
from labkit import paths
from labkit.course import checks
from labkit.course.exercises import EXERCISES
from labkit.course.grade import grade_class
from labkit.course.masters import (
    HIDDEN_TESTS, SOLUTION, check_calls, is_answer, is_check, is_written, master_paths, nbgrader,
)
from labkit.course.release import release

NOTEBOOKS = paths.project_dir() / "notebooks"
TOTAL = sum(exercise.points for exercise in EXERCISES.values())


def read(path):
    return nbformat.read(path, as_version=4)


def cell_of(notebook, grade_id: str) -> int:
    return next(index for index, cell in enumerate(notebook.cells) if nbgrader(cell).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    release(NOTEBOOKS, folder)
    return folder


def test_the_exercises_are_the_registrys_in_their_notebooks():
    found = {nbgrader(cell)["grade_id"]: path.name for path in master_paths(NOTEBOOKS) for cell in read(path).cells
             if is_answer(cell)}
    assert found == {exercise_id: exercise.notebook for exercise_id, exercise in EXERCISES.items()}
    for exercise in EXERCISES.values():
        notebook = read(NOTEBOOKS / exercise.notebook)
        assert nbgrader(notebook.cells[cell_of(notebook, exercise.check)])["points"] == exercise.points
    assert TOTAL == 22


def test_check_cells_only_call_labkits_checks_on_their_answer():
    for exercise in EXERCISES.values():
        notebook = read(NOTEBOOKS / exercise.notebook)
        calls = check_calls(notebook.cells[cell_of(notebook, exercise.check)].source)
        assert calls is not None and [call.keywords for call in calls] == [{}, {"hidden": True}], exercise.check
        assert all(call.names == exercise.defines for call in calls)


def test_nothing_runs_the_students_code_between_an_answer_and_its_check():
    for exercise in EXERCISES.values():
        notebook = read(NOTEBOOKS / exercise.notebook)
        between = notebook.cells[cell_of(notebook, exercise.answer) + 1:cell_of(notebook, exercise.check)]
        assert all(cell.cell_type == "markdown" for cell in between), exercise.answer


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_answer_follows_a_prompt_that_says_all_it_needs(exercise_id, capsys):
    exercise = EXERCISES[exercise_id]
    notebook = read(NOTEBOOKS / exercise.notebook)
    prompt = notebook.cells[cell_of(notebook, exercise_id) - 1]
    assert prompt.cell_type == "markdown"
    points = f"{exercise.points:g} point{'s' if exercise.points != 1 else ''}"
    assert re.match(rf"\*\*Exercise \d+: .* \({points}\)\.\*\*", prompt.source), prompt.source[:80]
    for name in (*exercise.defines, *exercise.may_use, *exercise.beneath):
        assert f"`{name}" in prompt.source, (exercise_id, name)
    for module, members in exercise.members.items():
        assert all(f"`{module}.{member}`" in prompt.source for member in members)
    # The line the prompt promises is the line the check prints for the master's answer.
    namespace = run_cell(master_answers(NOTEBOOKS / exercise.notebook)[exercise_id], notebook_namespace())
    check_name = next(call.function for call in check_calls(notebook.cells[cell_of(notebook, exercise.check)].source))
    getattr(checks, check_name)(*(namespace[name] for name in exercise.defines))
    printed = capsys.readouterr().out.strip()
    assert f"`{printed}`" in prompt.source, (printed, prompt.source[-200:])


def test_each_prompt_names_the_attributes_later_cells_rely_on():
    attributes = {"Up": ["up_conv", "conv"], "BasicBlock": ["conv1", "bn1", "relu", "conv2", "bn2", "downsample"],
                  "UNet": ["input_block", "down1", "up1", "output_conv"], "ResNet34UNet": ["encoder", "up5", "output_conv"],
                  "ResNet34Encoder": ["conv1", "bn1", "maxpool", "layer1", "layer4"]}
    for exercise_id, names in attributes.items():
        notebook = read(NOTEBOOKS / EXERCISES[exercise_id].notebook)
        prompt = notebook.cells[cell_of(notebook, exercise_id) - 1].source
        assert all(f"`{name}`" in prompt for name in names), exercise_id


def test_at_least_four_written_questions_follow_their_question():
    written = [(path.name, index) for path in master_paths(NOTEBOOKS) for index, cell in enumerate(read(path).cells)
               if is_written(cell)]
    assert len(written) >= 4
    for name, index in written:
        cells = read(NOTEBOOKS / name).cells
        assert cells[index].cell_type == "markdown" and nbgrader(cells[index])["points"] > 0
        assert cells[index - 1].source.startswith("**Question") and "marked by hand" in cells[index - 1].source
        assert "*Rubric.*" in cells[index].source


def test_the_release_holds_no_answer_no_hidden_check_and_nothing_of_the_masters_run(released):
    for path in master_paths(NOTEBOOKS):
        text = (released / path.name).read_text()
        notebook = read(released / path.name)
        assert SOLUTION[0] not in text and HIDDEN_TESTS[0] not in text and "hidden=True" not in text, path.name
        assert "widgets" not in notebook.metadata
        assert all(not cell.get("outputs") and "execution" not in cell.metadata
                   for cell in notebook.cells if cell.cell_type == "code"), path.name
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", path.read_text().replace("\\n", "\n"), re.S):
            found = [line.strip() for line in region.splitlines() if len(line.strip()) > 25 and line.strip() in text]
            assert len(found) < 2, (path.name, found)  # one line may be common code


def test_the_releases_graded_cells_are_locked(released):
    for path in released.glob("*.ipynb"):
        for cell in read(path).cells:
            if is_check(cell):
                assert cell.metadata.get("deletable") is False and cell.metadata.get("editable") is False
            elif nbgrader(cell).get("solution"):
                assert cell.metadata.get("deletable") is False and "editable" not in cell.metadata


def grade_quietly(folder, **options):
    with contextlib.redirect_stdout(io.StringIO()):
        return grade_class(folder, NOTEBOOKS, checks_only=True, report=lambda line: None, **options)


def test_grading_the_masters_gives_full_marks_and_the_release_nothing(released, tmp_path):
    import shutil

    shutil.copytree(NOTEBOOKS, tmp_path / "class" / "master", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(released, tmp_path / "class" / "release")
    results = {result.student: result for result in grade_quietly(tmp_path / "class", jobs=2)}
    assert results["master"].total == TOTAL == results["master"].autograded_max
    assert results["release"].total == 0
    assert all(score.status == "failed" for score in results["release"].scores if score.points is not None)
    assert results["release"].manual_max == results["master"].manual_max >= 8
