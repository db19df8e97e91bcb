"""The workbook itself as a lab: its seven notebooks are masters, their release hides every
answer, and grading scores exactly what a student got right.

The two grading runs execute the whole workbook in fresh kernels (smoke profile), a couple of
minutes each on two cores; every other test here only reads the notebooks.
"""

import re
import shutil

import nbformat
import pytest

from labkit import paths
from labkit.grading import grade
from labkit.lab import HIDDEN_TESTS, SOLUTION, is_answer, is_check, master_paths, nbgrader, release

NOTEBOOKS = paths.project_dir() / "notebooks"
# One exercise per idea of the lab, in the notebook that teaches it (grade ids of the check cells).
EXERCISES = {
    "00_data_exploration.ipynb": ["check_trimap_to_mask"],
    "01_unet_from_scratch.ipynb": ["check_DoubleConv", "check_Down", "check_Up", "check_UNet"],
    "02_resnet34_unet.ipynb": ["check_BasicBlock", "check_make_stage", "check_ResNet34Encoder", "check_ResNet34UNet"],
    "03_training.ipynb": ["check_segmentation_loss", "check_training_step", "check_train_one_epoch"],
    "04_evaluation.ipynb": ["check_dice_iou"],
    "05_inference_gallery.ipynb": ["check_mask_at_photo_size"],
    "06_discussion.ipynb": [],
}
# The classic mistake the 04 check exists to catch: Dice pooled over the batch, not per image.
DICE_OVER_THE_BATCH = '''def dice_per_image(logits, truth, threshold=0.5):
    predicted = torch.sigmoid(logits.reshape(truth.shape)) > threshold
    pet = truth == 1
    return (2 * (predicted & pet).sum() / (predicted.sum() + pet.sum()).clamp_min(1)).repeat(len(truth)).float()


def iou_per_image(logits, truth, threshold=0.5):
    predicted = torch.sigmoid(logits.reshape(truth.shape)) > threshold
    pet = truth == 1
    return ((predicted & pet).sum((1, 2)) / (predicted | pet).sum((1, 2)).clamp_min(1)).float()'''


def read(path):
    return nbformat.read(path, as_version=4)


def check_ids(notebook) -> list[str]:
    return [nbgrader(cell)["grade_id"] for cell in notebook.cells if is_check(cell)]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    release(NOTEBOOKS, folder)
    return folder


def test_each_notebook_checks_the_exercises_of_its_idea():
    assert {path.name: check_ids(read(path)) for path in master_paths(NOTEBOOKS)} == EXERCISES


def test_every_check_cell_follows_an_answer_cell_and_has_hidden_tests():
    for path in master_paths(NOTEBOOKS):
        cells = read(path).cells
        for index, cell in enumerate(cells):
            if is_check(cell):
                assert any(is_answer(earlier) for earlier in cells[:index]), (path.name, nbgrader(cell))
                assert HIDDEN_TESTS[0] in cell.source, (path.name, nbgrader(cell))


def solution_regions(path) -> list[set[str]]:
    """The distinctive lines (longer than 25 characters) of each solution region of a master."""
    return [{line.strip() for line in block.splitlines() if len(line.strip()) > 25}
            for cell in read(path).cells
            for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, flags=re.S)]


def test_the_release_holds_no_solution_and_no_hidden_check(released):
    for path in master_paths(NOTEBOOKS):
        text = (released / path.name).read_text()
        assert SOLUTION[0] not in text and HIDDEN_TESTS[0] not in text and "seed=1)" not in text, path.name
        for region in solution_regions(path):
            # One line may be common code (`height, width = images.shape[-2:]`); two give an answer away.
            found = [line for line in region if line in text]
            assert len(found) < 2, (path.name, found)


def test_the_release_is_valid_nbformat_with_empty_outputs(released):
    for path in sorted(released.glob("*.ipynb")):
        notebook = read(path)
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


@pytest.fixture(scope="module")
def release_scores(released):
    return grade(released, NOTEBOOKS, timeout=900)


@pytest.fixture(scope="module")
def one_wrong_scores(tmp_path_factory):
    """The masters as a submission, with the Dice exercise answered by pooling over the batch."""
    folder = tmp_path_factory.mktemp("one-wrong")
    for path in master_paths(NOTEBOOKS):
        shutil.copy(path, folder / path.name)
    evaluation = read(folder / "04_evaluation.ipynb")
    for cell in evaluation.cells:
        if is_answer(cell) and nbgrader(cell)["grade_id"] == "dice_iou":
            cell.source = DICE_OVER_THE_BATCH
    nbformat.write(evaluation, folder / "04_evaluation.ipynb")
    return grade(folder, NOTEBOOKS, timeout=900)


def test_grading_the_untouched_release_gives_zero_on_every_exercise(release_scores):
    assert len(release_scores) == sum(map(len, EXERCISES.values()))
    assert all(score.points == 0 and score.status == "failed" for score in release_scores), \
        [(score.grade_id, score.status, score.detail) for score in release_scores if score.points]


def test_one_wrong_answer_loses_exactly_that_exercise_and_the_rest_earn_full_marks(one_wrong_scores):
    lost = {score.grade_id: score.detail for score in one_wrong_scores if score.points < score.max_points}
    assert list(lost) == ["check_dice_iou"], lost
    assert lost["check_dice_iou"].startswith("CheckFailed"), lost  # the check's own message, not a crash
