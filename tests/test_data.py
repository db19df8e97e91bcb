"""labkit.data, the package: every name the notebooks and modules use stays reachable as
`data.<name>`, whichever module of the package now defines it."""

import json
import re
from pathlib import Path

import pytest

from labkit import data

REPO = Path(__file__).resolve().parents[1]
DATA_ATTRIBUTE = re.compile(r"(?<![\w.])data\.([A-Za-z_]\w*)")


def names_used_in(text: str) -> set[str]:
    return set(DATA_ATTRIBUTE.findall(text))


def notebook_sources() -> list[tuple[str, str]]:
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    return [(path.name, "".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]))
            for path in notebooks]


def module_sources() -> list[tuple[str, str]]:
    modules = sorted((REPO / "labkit").glob("*.py"))
    return [(path.name, path.read_text()) for path in modules if "from labkit import" in path.read_text()]


@pytest.mark.parametrize("where, source", notebook_sources() + module_sources())
def test_every_data_name_used_in_the_notebooks_and_modules_is_exported(where, source):
    missing = sorted(name for name in names_used_in(source) if not hasattr(data, name))
    assert not missing, f"{where} uses data.{', data.'.join(missing)}, which labkit.data no longer exports"


def test_the_package_exports_what_it_lists():
    assert [name for name in data.__all__ if not hasattr(data, name)] == []


def test_the_data_layer_imports_nothing_from_the_metrics_that_score_its_masks():
    """Data flows photo -> cache -> batch -> model -> metric: the ignore label is defined where masks
    are made, and the metrics import it from there."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, labkit.data; print('labkit.metrics' in sys.modules)"],
                            capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "False"
