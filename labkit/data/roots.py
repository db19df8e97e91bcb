"""Where the dataset lives: an explicit folder, $LABKIT_DATA, the downloaded copy, or the
synthetic stand-in that lets every notebook run before the real photos are downloaded."""

import os
import warnings
from pathlib import Path

from labkit import paths
from labkit.synthetic import make_synthetic

FIX_HINT = "run `python -m labkit download` or set LABKIT_DATA to a folder with images/ and annotations/"


class SyntheticDataWarning(UserWarning):
    """No real dataset was found, so the synthetic stand-in is used."""


def default_root() -> Path:
    return paths.data_dir() / "oxford-iiit-pet"


def synthetic_root() -> Path:
    """Where the synthetic stand-in lives (or will be made), as an absolute path."""
    return absolute(paths.data_dir() / "synthetic")


def is_synthetic(root: str | Path) -> bool:
    """True for a folder written by `make_synthetic` (it leaves a SYNTHETIC.md marker)."""
    return (Path(root) / "SYNTHETIC.md").is_file()


def absolute(path: str | Path) -> Path:
    """`path` with `~` expanded, made absolute against the working directory and normalised.

    Symlinks are kept as the user named them; only the working directory is pinned, so a root
    stored in a checkpoint still points at the same folder when read from another one.
    """
    return Path(os.path.abspath(Path(path).expanduser()))


def resolve_root(root: str | Path | None = None) -> Path:
    """Pick the dataset folder, as an absolute path: argument > $LABKIT_DATA >
    data/oxford-iiit-pet > synthetic set.

    The synthetic set is generated on first use, so every notebook runs even before the real
    photos are downloaded.
    """
    found = chosen_root(root)
    if found is not None:
        return found
    candidate = synthetic_root()
    if not (candidate / "annotations" / "trainval.txt").is_file():
        make_synthetic(candidate)
    warnings.warn(
        f"Oxford-IIIT Pet not found at {default_root()}; using the synthetic stand-in at "
        f"{candidate}. For the real photos, {FIX_HINT}.",
        SyntheticDataWarning,
        stacklevel=2,
    )
    return candidate


def chosen_root(root: str | Path | None = None) -> Path | None:
    """The dataset folder `resolve_root` picks before its synthetic fallback (argument >
    $LABKIT_DATA > data/oxford-iiit-pet), or None where it would fall back; writes nothing.

    Raises:
        FileNotFoundError: the argument or $LABKIT_DATA names a folder without the dataset.
    """
    if root is not None:
        candidate, source = absolute(root), "the root argument"
    elif os.environ.get("LABKIT_DATA"):
        candidate, source = absolute(os.environ["LABKIT_DATA"]), "$LABKIT_DATA"
    elif (default_root() / "annotations" / "trainval.txt").is_file():
        return absolute(default_root())
    else:
        return None
    if not (candidate / "annotations" / "trainval.txt").is_file():
        raise FileNotFoundError(
            f"No dataset at {candidate} (from {source}): {candidate / 'annotations' / 'trainval.txt'} "
            f"is missing. To fix it, {FIX_HINT}."
        )
    return candidate
