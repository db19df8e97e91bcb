"""Numbers that cannot go stale: every number in the notebooks' prose, and in the README's account of
the committed outputs, is printed by an output of its notebook, saved in reports/results.json, or a
constant of the method listed below with the reason it may stand in prose.

A prose number that matches none of them was typed in by hand from some run, and the next run
will contradict it: print it from a cell and let the prose point at the line instead."""

import pytest

from labkit import paths
from prose_numbers import (
    Printed, markdown_numbers, numbers_in, printed_by_notebook, printed_in, read_notebook, read_results,
    readme_section, saved_in, unsupported,
)

PROJECT = paths.project_dir()
NOTEBOOKS = sorted((PROJECT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RESULTS = PROJECT / "reports" / "results.json"
README_SECTION = "### What the workbook produces"  # the README's account of the committed outputs

# (where, number as written) -> why it may stand in prose. `where` is a notebook's file name or
# README.md. Keep it short: a run's result belongs in an output, not here.
ALLOWED = {
}


def allowed_in(where: str):
    return lambda number: (where, number.text) in ALLOWED


def describe(numbers) -> str:
    return "\n".join(f"  {number.where}: {number.text!r}" for number in numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_number_in_a_notebooks_prose_was_printed_by_it_or_saved(path):
    notebook = read_notebook(path)
    printed = printed_by_notebook(notebook) + saved_in(read_results(RESULTS))
    stale = unsupported(markdown_numbers(notebook, path.name), printed, allowed_in(path.name))
    assert not stale, f"numbers in prose that no output prints and results.json does not hold:\n{describe(stale)}"


def test_the_readmes_numbers_about_the_committed_outputs_are_in_them():
    section = readme_section((PROJECT / "README.md").read_text(), README_SECTION)
    printed = sum((printed_by_notebook(read_notebook(path)) for path in NOTEBOOKS), saved_in(read_results(RESULTS)))
    stale = unsupported(numbers_in(section, "README.md"), printed, allowed_in("README.md"))
    assert not stale, f"README numbers that no committed output prints:\n{describe(stale)}"


def test_each_allowed_constant_has_a_reason_and_still_stands_in_prose():
    written = {(path.name, number.text) for path in NOTEBOOKS for number in markdown_numbers(read_notebook(path), path.name)}
    section = readme_section((PROJECT / "README.md").read_text(), README_SECTION)
    written |= {("README.md", number.text) for number in numbers_in(section, "README.md")}
    assert all(reason.strip() for reason in ALLOWED.values())
    assert not set(ALLOWED) - written, f"allowed numbers no prose uses any more: {sorted(set(ALLOWED) - written)}"


# --- the reader, against the stale numbers it exists to catch ---------------------------------------


def check(prose: str, output: str) -> list[str]:
    return [number.text for number in unsupported(numbers_in(prose, "cell"), printed_in(output), lambda number: False)]


def test_a_planted_stale_number_is_caught_and_its_printed_twin_passes():
    output = "loss 1.203 -> 0.063, Dice 0.444 -> 0.999, in 5 s\nwith skips valid Dice 0.776 on 20 photos"
    assert check("The batch Dice reached 0.999 and the valid Dice 0.776.", output) == []
    assert check("The batch Dice reached 0.997 in 7 s.", output) == ["0.997", "7 s"]


def test_a_value_matches_when_the_output_rounds_to_it_as_written():
    assert check("best valid Dice 0.811", "valid Dice 0.8108") == []
    assert check("best valid Dice 0.812", "valid Dice 0.8108") == ["0.812"]
    assert check("a drop of -0.015", "gap +0.0151") == []


def test_time_phrases_are_numbers_and_must_fit_a_printed_time():
    assert check("The one-batch check trains for about a minute.", "in 5 s") == ["about a minute"]
    assert check("The one-batch check trains for about a minute.", "in 58 s") == []
    assert check("It trains two UNets for several minutes.", "both trained and scored in 86 s") == ["several minutes"]
    assert check("It takes under a minute or two.", "Time since the run record: 3.7 minutes") == ["under a minute or two"]
    assert check("It takes under a minute or two.", "Time since the run record: 97 s") == []


def test_times_compare_across_units():
    assert check("It took 3.7 minutes.", "Time since the run record: 222 s") == []
    assert check("It took 86 s.", "both trained and scored in 1.4 minutes") == ["86 s"]


def test_units_percentages_and_ratios_are_read_with_their_numbers():
    found = {number.text: number.kind for number in numbers_in("16.8 img/s, 11.5%, 1.83x, +1.6 SE, 62 MiB", "cell")}
    assert found == {"16.8": "rate", "11.5": "percent", "1.83": "ratio", "+1.6": "standard errors", "62": "memory"}
    assert check("a pet covers 41% of the photo", "mean pet fraction 0.408") == []


def test_code_formulas_counts_and_names_are_not_claims():
    prose = ("Two 3x3 convs in `lr=0.003`; $\\text{Dice} = 2 \\cdot 4 / 12 = 0.6667$; ResNet34 has 16 blocks "
             "in 2016 at threshold 0.5, a second forward pass, [link](https://x.org/0.123)")
    assert numbers_in(prose, "cell") == []


def test_saved_results_count_but_not_per_photo_lists():
    saved = saved_in({"training": {"train_seconds": 318.2, "valid_dice": 0.8108},
                      "evaluation": {"test_dice_per_image": [0.1 * index for index in range(50)]}})
    assert saved.supports(numbers_in("318 s", "cell")[0]) and saved.supports(numbers_in("0.811", "cell")[0])
    assert not saved.supports(numbers_in("0.700", "cell")[0])
    assert isinstance(saved, Printed)
