"""Faults caused for real on the command line: a disk that fills, a read-only disk, a cache
folder that is a file. Each ends in one line naming the path and the fix, and leaves no
half-written file in place of a good one."""

import json
import re

import numpy as np
import pytest
import torch

from labkit.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from labkit.cli import main
from labkit.models import build_model

from filesystems import read_only_folder, small_disk  # noqa: F401


def one_error_line(capsys, command: str) -> str:
    """The single line a failed command printed on stderr (progress bars aside)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("labkit ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"labkit {command}: error: ")
    return lines[0]


def assert_nothing_half_written(folder):
    """No temporary is left, and every file labkit wrote is whole."""
    assert not list(folder.rglob("*.tmp"))
    for path in folder.rglob("*.pt"):
        load_checkpoint(path)
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())
    for path in folder.rglob("*.npy"):
        np.load(path)


@pytest.fixture
def checkpoint(tmp_path_factory):
    """A tiny UNet's checkpoint, trained at 32 px (its weights do not matter here)."""
    torch.manual_seed(0)
    model = build_model("unet", base_width=4)
    path = tmp_path_factory.mktemp("checkpoint") / "best.pt"
    return save_checkpoint(make_checkpoint("unet", {"base_width": 4}, model, config={"image_size": 32}), path)


@pytest.mark.parametrize("size", ["1M", "2M", "3M", "4608K", "6M"])
def test_training_on_a_disk_that_fills_ends_in_one_line_and_leaves_nothing_half_written(
        size, small_disk, synthetic_root, monkeypatch, capsys):
    """A smoke run writes about 9 MB (its cache, best.pt, last.pt and their temporaries), so each
    of these disks fills at another file: the cache, best.pt, last.pt or the history."""
    disk = small_disk(size)
    monkeypatch.setenv("LABKIT_CACHE", str(disk / "cache"))
    output = disk / "runs"
    assert main(["train", "--profile", "smoke", "--data-path", str(synthetic_root), "--output", str(output)]) == 1
    line = one_error_line(capsys, "train")
    assert re.match(rf"labkit train: error: no space left on the disk writing {disk}/\S+; free some space", line)
    assert_nothing_half_written(disk)


def test_a_disk_already_full_stops_the_run_before_training_naming_the_lock_file(small_disk, synthetic_root,
                                                                               monkeypatch, capsys):
    disk = small_disk("1M")
    with open(disk / "filler", "wb") as filler, pytest.raises(OSError):
        filler.write(b"x" * 2_000_000)
        filler.flush()
    monkeypatch.setattr("labkit.train.load_training_data", lambda *a: pytest.fail("decoded photos on a full disk"))
    assert main(["train", "--profile", "smoke", "--data-path", str(synthetic_root), "--output", str(disk)]) == 1
    assert f"no space left on the disk writing {disk / 'unet-smoke' / 'train.lock'}" in one_error_line(capsys, "train")


def test_a_read_only_output_folder_is_refused_before_training(read_only_folder, synthetic_root, capsys):
    assert main(["train", "--profile", "smoke", "--data-path", str(synthetic_root),
                 "--output", str(read_only_folder / "runs")]) == 1
    assert (f"cannot write checkpoints into {read_only_folder / 'runs' / 'unet-smoke'} (Read-only file system); "
            "choose another folder with --output") in one_error_line(capsys, "train")


@pytest.mark.parametrize("command, named", [
    ("train", "cannot write checkpoints into {home}/checkpoints/unet-smoke (Read-only file system)"),
    ("evaluate", "cannot write the decoded-image cache into {home}/data/cache (Read-only file system); "
                 "point LABKIT_CACHE at"),
    ("predict", "cannot write predictions into {home}/reports/predictions (Read-only file system); "
                "free some space or choose another folder with --output"),
])
def test_a_read_only_labkit_home_is_named_by_each_command(command, named, read_only_folder, synthetic_root, checkpoint,
                                                          monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(read_only_folder))
    monkeypatch.delenv("LABKIT_CACHE")  # the cache too goes under LABKIT_HOME
    photo = sorted((synthetic_root / "images").glob("*.jpg"))[0]
    arguments = {"train": ["--profile", "smoke", "--data-path", str(synthetic_root)],
                 "evaluate": ["--checkpoint", str(checkpoint), "--data-path", str(synthetic_root)],
                 "predict": [str(photo), "--checkpoint", str(checkpoint)]}[command]
    assert main([command, *arguments]) == 1
    assert named.format(home=read_only_folder) in one_error_line(capsys, command)


def test_labkit_cache_naming_a_file_is_refused_before_any_photo_is_decoded(tmp_path, synthetic_root, checkpoint,
                                                                          monkeypatch, capsys):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("labkit.data.cache._decode_split", lambda *a: pytest.fail("decoded before checking the cache"))
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data-path", str(synthetic_root)]) == 1
    assert (f"cannot write the decoded-image cache into {tmp_path / 'cache'} (a file stands where the folder should "
            "be); point LABKIT_CACHE at a folder") in one_error_line(capsys, "evaluate")
