"""The data a GPU check runs on, found wherever the tree has it, and the quality to expect of it.

The real 301-photo sample travels with the project's `shared/` folder, inside the project or beside
it; without it the check makes the synthetic set. Each dataset has its own quality target, stated
with the reason for its number, or none where nothing measured says what to expect.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

from labkit import data, paths

SAMPLE = Path("data") / "oxford-iiit-pet-sample"  # the real sample, under a `shared/` folder


@dataclass(frozen=True)
class QualityTarget:
    """The test Dice (mean over photos at original size) each model should reach with the `gpu`
    profile on one dataset, and why that number; None where nothing measured says what to expect."""

    test_dice: dict[str, float] | None
    why: str


# By the data the check finds. The 301-photo sample cannot reach 0.90: the cpu profile measured
# test Dice 0.845 (UNet) and 0.808 (ResNet34-UNet, then at 128 px) on it (101 test photos, the
# runs of 2026-12-03, standard errors 0.015 and 0.013); the gpu profile trains wider models for
# longer at 256 px, so falling more than three standard errors (about 0.04) below those would be
# a fault. (Since 2026-12-06 the cpu profile's ResNet34-UNet trains at 96 px: 0.781.)
QUALITY_TARGETS = {
    "sample": QualityTarget({"unet": 0.79, "resnet34_unet": 0.76},
                            "the cpu profile's measured test Dice on this sample (0.845, 0.808) less 3 standard errors, "
                            "rounded down"),
    "synthetic": QualityTarget({"unet": 0.90, "resnet34_unet": 0.90},
                               "the cpu profile passes valid Dice 0.90 on the small synthetic set (tests/test_train.py)"),
    "other": QualityTarget(None, "no run on this data has been measured; the scores are recorded, not judged"),
}


@dataclass(frozen=True)
class CheckData:
    """The dataset a check runs on, how it was found, and what it holds."""

    root: Path
    kind: str  # "sample" (the real 301 photos), "synthetic", or "other" (any other real data)
    found: str  # where it was looked up: "--data-path", "$LABKIT_DATA", "../shared/...", ...
    photos: dict[str, int]  # per split: train, valid, test

    def describe(self) -> str:
        what = {"sample": "the real 301-photo sample", "synthetic": "the synthetic set (no real photos found)",
                "other": "real photos"}[self.kind]
        counts = ", ".join(f"{count} {split}" for split, count in self.photos.items())
        return f"{what} at {self.root} ({counts}; found by {self.found})"


def sample_places() -> list[Path]:
    """Where the real sample may be: in a `shared/` folder inside the project or beside it."""
    project = paths.project_dir()
    return [project / "shared" / SAMPLE, project.parent / "shared" / SAMPLE]


def find_data(data_root: str | None, create: bool = True) -> CheckData:
    """The dataset to check with: `data_root` if given, else $LABKIT_DATA, else the real dataset in
    data/oxford-iiit-pet, else the real sample wherever the tree has it, else the synthetic set
    (written now unless `create` is False).

    Raises:
        FileNotFoundError: `data_root` or $LABKIT_DATA names a folder that holds no dataset.
    """
    candidates = [(data_root, "--data-path"), (os.environ.get("LABKIT_DATA"), "$LABKIT_DATA"),
                  (data.default_root(), "data/oxford-iiit-pet")]
    candidates += [(place, str(place)) for place in sample_places()]
    for candidate, found in candidates:
        if candidate is None:
            continue
        if found in ("--data-path", "$LABKIT_DATA") or (Path(candidate) / "annotations" / "trainval.txt").is_file():
            return described(data.resolve_root(candidate), found)
    root = data.synthetic_root()
    if (root / "annotations" / "trainval.txt").is_file():
        return described(root, "no real data found")
    if create:
        return described(data.make_synthetic(root), "no real data found")
    from labkit.synthetic_shape import small_shape

    counts = small_shape().split_counts()  # what would be written
    valid = math.ceil(counts["trainval"] / 10)
    return CheckData(root, "synthetic", "no real data found (not written yet)",
                     {"train": counts["trainval"] - valid, "valid": valid, "test": counts["test"]})


def described(root: Path, found: str) -> CheckData:
    photos = {split: len(data.read_split(root, split)) for split in ("train", "valid", "test")}
    if data.is_synthetic(root):
        kind = "synthetic"
    elif photos["train"] + photos["valid"] == 200 and photos["test"] == 101:  # the sample's split files
        kind = "sample"
    else:
        kind = "other"
    return CheckData(Path(root), kind, found, photos)
