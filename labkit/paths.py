"""Where the project keeps its data, caches, checkpoints and reports.

Notebooks run from `notebooks/`, the CLI from the repository root, tests from anywhere; every
default path is therefore resolved against the project folder, not the working directory.
"""

import os
from pathlib import Path


def project_dir() -> Path:
    """The project folder: `$LABKIT_HOME`, else the nearest folder upwards from the working
    directory that holds both `pyproject.toml` and `labkit/`, else the working directory."""
    if os.environ.get("LABKIT_HOME"):
        return Path(os.environ["LABKIT_HOME"]).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "labkit").is_dir():
            return folder
    return here


def data_dir() -> Path:
    return project_dir() / "data"


def cache_dir() -> Path:
    """Decoded-image caches: `$LABKIT_CACHE`, else `data/cache`."""
    if os.environ.get("LABKIT_CACHE"):
        return Path(os.environ["LABKIT_CACHE"]).expanduser()
    return data_dir() / "cache"


def checkpoints_dir() -> Path:
    return project_dir() / "checkpoints"


def reports_dir() -> Path:
    return project_dir() / "reports"


def figures_dir() -> Path:
    return reports_dir() / "figures"
