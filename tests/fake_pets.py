"""Fake datasets in the official Oxford-IIIT Pet layout, written into a test's tmp_path."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def two_tone_photo(width: int, height: int) -> Image.Image:
    """Left half orange, right half blue: flat colours survive GIF palettes and JPEG alike."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (230, 120, 30)
    pixels[:, width // 2 :] = (30, 60, 200)
    return Image.fromarray(pixels)


def pet_trimap(width: int, height: int) -> np.ndarray:
    """Background 2, a pet rectangle 1 in the middle, outlined by a border band 3."""
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 3
    trimap[height // 4 + 2 : 3 * height // 4 - 2, width // 4 + 2 : 3 * width // 4 - 2] = 1
    return trimap


def write_pet(root: Path, name: str, width: int = 40, height: int = 30) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    two_tone_photo(width, height).save(root / "images" / f"{name}.jpg", "JPEG", quality=95)
    Image.fromarray(pet_trimap(width, height)).save(root / "annotations" / "trimaps" / f"{name}.png")


def write_split_file(root: Path, filename: str, names: list[str]) -> Path:
    path = root / "annotations" / filename
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    path.write_text(header + "".join(f"{name} 1 1 1\n" for name in names))
    return path


def fake_dataset(root: Path, trainval_count: int = 23, test_count: int = 3) -> Path:
    """Photos of slightly different sizes so every resize path is exercised."""
    trainval = [f"Tabby_{index}" for index in range(trainval_count)]
    test = [f"Tabby_{index}" for index in range(trainval_count, trainval_count + test_count)]
    for offset, name in enumerate(trainval + test):
        write_pet(root, name, width=40 + offset, height=30 + offset % 5)
    write_split_file(root, "trainval.txt", trainval)
    write_split_file(root, "test.txt", test)
    return root


@pytest.fixture
def fake_root(tmp_path) -> Path:
    return fake_dataset(tmp_path / "pets")


def names(samples) -> list[str]:
    return [sample.name for sample in samples]
