"""Notebook cells for tests: source run the way a Jupyter kernel runs a cell.

IPython compiles each cell under a file name of its own and puts the source in `linecache`, which
is where a check finds the cell that defines an answer. `run_cell` does the same, so answers
written in a test are read, screened and checked exactly as a student's are.
"""

import itertools
import linecache

import nbformat

from labkit.course.masters import SOLUTION, is_answer, nbgrader, without_markers

_numbers = itertools.count()
NOTEBOOK_IMPORTS = """
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from labkit import metrics
from labkit.course import checks
from labkit.models.layers import conv3x3, init_weights, pad_to_multiple
from labkit.models.resnet34_unet import DecoderBlock
from labkit.train import SplitTensors, TrainingState, prepare_batch, shuffled_batches
"""


def run_cell(source: str, namespace: dict) -> dict:
    """Run `source` as a notebook cell in `namespace` (returned)."""
    filename = f"<test cell {next(_numbers)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def notebook_namespace() -> dict:
    """A namespace holding what the workbook's notebooks import, as their first cell does."""
    return run_cell(NOTEBOOK_IMPORTS, {"__name__": "__main__"})


def master_answers(path) -> dict[str, str]:
    """The master's answer cells of a notebook, markers removed, by grade_id."""
    notebook = nbformat.read(path, as_version=4)
    return {nbgrader(cell)["grade_id"]: without_markers(cell.source, SOLUTION) for cell in notebook.cells if is_answer(cell)}
