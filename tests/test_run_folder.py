import subprocess
import sys

import pytest

from labkit import train
from labkit.config import make_config
from labkit.run_folder import LOCK_NAME, RunFolderBusy, claimed


@pytest.fixture
def config(synthetic_root, tmp_path):
    return make_config("unet", "smoke", data_root=str(synthetic_root), output_dir=str(tmp_path), image_size=32,
                       epochs=1, train_limit=8)


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_folder_and_the_holder(config):
    with claimed(train.run_dir_for(config)):
        with pytest.raises(RunFolderBusy, match=r"unet-smoke is in use by another training run \(pid \d+"):
            train.fit(config, progress=False)


def test_a_busy_folder_is_refused_before_any_photo_is_decoded(config, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded data although the run folder was busy")

    monkeypatch.setattr(train.data, "load_split", must_not_decode)
    with claimed(train.run_dir_for(config)), pytest.raises(RunFolderBusy):
        train.fit(config, progress=False)


def test_a_lock_left_by_a_killed_process_does_not_block_the_folder(config):
    run_dir = train.run_dir_for(config)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from labkit.run_folder import claimed\n"
        f"with claimed(Path({str(run_dir)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy):
            train.fit(config, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / LOCK_NAME).is_file()  # the file stays; the lock went with the process
    assert train.fit(config, progress=False).best_checkpoint.is_file()


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(config, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    config.output_dir = str(tmp_path / "a-file")
    monkeypatch.setattr(train.data, "load_split", lambda *a, **k: pytest.fail("decoded before checking the folder"))
    with pytest.raises(NotADirectoryError, match=r"cannot write checkpoints into .*a-file.*--output"):
        train.fit(config, progress=False)


def test_a_run_folder_without_write_permission_is_named(config, monkeypatch):
    def refuse(self, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.write_bytes", refuse)  # root ignores chmod, so refuse the write itself
    with pytest.raises(PermissionError, match=r"cannot write checkpoints into .*unet-smoke \(Permission denied\)"):
        train.fit(config, progress=False)


def test_temporaries_of_a_run_killed_while_writing_a_checkpoint_are_removed_when_the_folder_is_claimed(
        synthetic_root, tmp_path):
    """SIGKILL the moment a second last.pt starts being written (a 32-wide UNet's last.pt is about
    90 MB, so the write takes a while), then resume: before, last.pt.PID.tmp stayed for good."""
    import signal
    import time

    settings = dict(data_root=str(synthetic_root), output_dir=str(tmp_path), image_size=32, epochs=3, train_limit=8,
                    model_kwargs={"base_width": 32})
    config = make_config("unet", "smoke", **settings)
    run_dir = train.run_dir_for(config)
    trainer = subprocess.Popen([sys.executable, "-c", (
        "from labkit.config import make_config; from labkit.train import fit\n"
        f"fit(make_config('unet', 'smoke', **{settings!r}), progress=False)")])
    try:
        while trainer.poll() is None and not (
                (run_dir / "last.pt").exists() and list(run_dir.glob("last.pt.*.tmp"))):
            time.sleep(0.002)
        trainer.send_signal(signal.SIGKILL)
    finally:
        trainer.wait()
    orphans = list(run_dir.glob("*.tmp"))
    assert trainer.returncode == -signal.SIGKILL and orphans  # killed mid-write: the fault really happened
    result = train.fit(config, resume=True, progress=False)
    assert [record.epoch for record in result.history] == [1, 2, 3]
    assert not list(run_dir.glob("*.tmp"))
