"""labkit.data.roots: which folder is the dataset, and the synthetic stand-in."""

from pathlib import Path

import pytest

from labkit.data import roots
from labkit.data.roots import SyntheticDataWarning, is_synthetic, resolve_root

from fake_pets import fake_dataset, fake_root  # noqa: F401 (a fixture)

def test_root_argument_wins_over_labkit_data(fake_root, tmp_path, monkeypatch):
    other = fake_dataset(tmp_path / "other", trainval_count=1, test_count=1)
    monkeypatch.setenv("LABKIT_DATA", str(other))
    assert resolve_root(fake_root) == fake_root


def test_labkit_data_is_used_without_an_argument(fake_root, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(fake_root))
    assert resolve_root() == fake_root


@pytest.mark.parametrize("given_by", ["argument", "LABKIT_DATA"])
def test_relative_root_is_resolved_to_an_absolute_path(fake_root, monkeypatch, given_by):
    # What training stores must still name the same folder when evaluate runs from another one.
    monkeypatch.chdir(fake_root.parent)
    if given_by == "LABKIT_DATA":
        monkeypatch.setenv("LABKIT_DATA", fake_root.name)
    root = resolve_root(fake_root.name if given_by == "argument" else None)
    assert root.is_absolute() and root == fake_root


def test_missing_explicit_root_says_what_is_missing_and_how_to_fix_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        resolve_root(tmp_path / "nowhere")
    message = str(error.value)
    assert "trainval.txt" in message and "python -m labkit download" in message and "LABKIT_DATA" in message


def test_missing_labkit_data_root_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$LABKIT_DATA"):
        resolve_root()


def test_downloaded_dataset_in_the_project_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    fake_dataset(tmp_path / "data" / "oxford-iiit-pet", trainval_count=1, test_count=1)
    assert resolve_root() == tmp_path / "data" / "oxford-iiit-pet"


def test_synthetic_set_is_generated_once_when_no_dataset_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    generated = []

    def fake_make_synthetic(root):
        generated.append(root)
        fake_dataset(Path(root), trainval_count=1, test_count=1)
        (Path(root) / "SYNTHETIC.md").write_text("synthetic\n")
        return Path(root)

    monkeypatch.setattr(roots, "make_synthetic", fake_make_synthetic)
    with pytest.warns(SyntheticDataWarning, match="synthetic"):
        first = resolve_root()
    with pytest.warns(SyntheticDataWarning, match="synthetic"):
        second = resolve_root()
    assert first == second == tmp_path / "data" / "synthetic"
    assert generated == [first] and is_synthetic(first)


def test_real_dataset_is_not_synthetic(fake_root):
    assert not is_synthetic(fake_root)
