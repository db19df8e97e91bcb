"""`bench rehearsal`: cache, training and evaluation measured on a tiny set, each number present and positive."""

import json
import sys

import numpy as np
import pytest

from labkit.bench import rehearsal
from labkit.cli import main
from labkit.data import read_split


def test_a_tiny_rehearsal_measures_every_split_size_and_stage(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "rehearsal", "--data-path", str(synthetic_root), "--image-sizes", "32",
                 "--profile", "smoke", "--epochs", "1"]) == 0
    (path,) = (tmp_path / "reports" / "bench").glob("rehearsal_*_smoke_unet_32px_on_cpu.json")
    report = json.loads(path.read_text())
    photos = {split: len(read_split(synthetic_root, split)) for split in ("train", "valid", "test")}
    assert [(row["split"], row["photos"]) for row in report["cache"]] == list(photos.items())
    assert all(row["seconds"] > 0 and row["bytes"] > 0 and row["image_size"] == 32 for row in report["cache"])
    (training,) = report["training"]
    assert training["epochs"] == 1 and training["seconds_per_epoch"] > 0 and training["train_images_per_second"] > 0
    assert training["peak_rss_bytes"] > report["bare_process"]["peak_rss_bytes"] > 0
    evaluation = report["evaluation"]
    assert evaluation["checkpoint"] == training["checkpoint"] and evaluation["peak_rss_bytes"] > 0
    assert [run["tta"] for run in evaluation["runs"]] == [False, True]
    assert all(run["photos"] == photos["test"] and run["seconds"] > 0 and 0 <= run["dice_original"] <= 1
               for run in evaluation["runs"])
    out = capsys.readouterr().out
    assert "photos/s" in out and "B on disk" in out and "peak RSS" in out and "images/s" in out
    assert not list((tmp_path / "cache").glob("rehearsal-*"))  # its fresh cache folder is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_peak_is_its_own_not_its_parents():
    hoard = np.ones(300_000_000 // 8)  # the parent touches 300 MB
    parent, source = rehearsal.peak_rss()
    child = rehearsal.in_child(rehearsal.bare_child)
    assert source == child.peak_rss_source == "VmHWM"
    assert child.peak_rss_bytes < parent - hoard.nbytes // 2


def test_a_missing_checkpoint_is_refused_before_anything_is_measured(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "rehearsal", "--data-path", str(synthetic_root), "--image-sizes", "32",
                 "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    captured = capsys.readouterr()
    assert "--checkpoint" in captured.err and "missing.pt" in captured.err and "cache" not in captured.out
