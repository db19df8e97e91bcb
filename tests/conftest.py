"""Shared fixtures: the real photo sample beside the repository and a small synthetic set."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = Path(
    os.environ.get("LABKIT_SHARED_SAMPLE", REPO.parent / "shared" / "data" / "oxford-iiit-pet-sample")
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its decoded-image caches into a temporary folder, never into data/."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("LABKIT_DATA", raising=False)


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """The real 301-photo slice of Oxford-IIIT Pet in ../shared (skips where it is absent)."""
    if not (SHARED_SAMPLE / "annotations" / "trainval.txt").is_file():
        pytest.skip(f"real photo sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset in the official layout, made once per test session."""
    from labkit.data import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n=60, size=128, seed=0)
