"""Every labkit name the notebooks import or reach through an imported module exists, so a change to
the package that would break a notebook fails here, in a second, without running the notebook."""

import ast
import importlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def code_of(path: Path) -> ast.Module:
    cells = ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    lines = [line for cell in cells for line in cell.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def labkit_names(tree: ast.Module) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """(module, name) pairs imported with `from labkit... import name`, and {local name: module}
    for the names that are modules themselves."""
    imported, modules = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labkit"):
            for alias in node.names:
                imported.add((node.module, alias.name))
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                except ModuleNotFoundError:
                    pass
    return imported, modules


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_every_labkit_name_a_notebook_uses_exists(notebook):
    tree = code_of(notebook)
    imported, modules = labkit_names(tree)
    missing = [f"{module}.{name}" for module, name in sorted(imported)
               if not hasattr(importlib.import_module(module), name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if not hasattr(importlib.import_module(modules[node.value.id]), node.attr):
                missing.append(f"{modules[node.value.id]}.{node.attr}")
    assert missing == []
