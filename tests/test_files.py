import errno
import subprocess
import sys

import pytest

from labkit.files import WriteError, is_orphan, remove_orphans, writable_folder, write_atomically

from filesystems import read_only_folder, small_disk  # noqa: F401


def sleeping_child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_temporary_whose_writer_is_gone_is_removed_and_a_live_writers_is_kept(tmp_path):
    gone, live = sleeping_child(), sleeping_child()
    gone.kill()
    gone.wait()  # reaped: its pid names no process now
    try:
        orphan = tmp_path / f"best.pt.{gone.pid}.tmp"
        being_written = tmp_path / f"last.pt.{live.pid}.tmp"
        kept = [being_written, tmp_path / "best.pt", tmp_path / "notes.tmp"]
        for path in (orphan, *kept):
            path.write_bytes(b"partial")
        assert remove_orphans(tmp_path) == [orphan]
        assert sorted(tmp_path.iterdir()) == sorted(kept)
    finally:
        live.kill()
        live.wait()


def test_this_processs_own_temporary_is_not_an_orphan(tmp_path):
    import os

    assert not is_orphan(tmp_path / f"last.pt.{os.getpid()}.tmp")


def test_a_full_disk_ends_in_one_error_naming_the_file_and_keeps_what_was_there(small_disk):
    disk = small_disk("1M")
    target = disk / "history.json"
    target.write_bytes(b"the good copy")
    with pytest.raises(WriteError) as raised:
        write_atomically(target, lambda file: file.write(b"x" * 2_000_000), "free some space")
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"no space left on the disk writing {target}; free some space"
    assert target.read_bytes() == b"the good copy" and sorted(disk.iterdir()) == [target]


def test_a_read_only_file_system_ends_in_one_error_naming_the_file(read_only_folder):
    with pytest.raises(WriteError, match=rf"^the file system is read-only writing {read_only_folder / 'a.png'}; "):
        write_atomically(read_only_folder / "a.png", lambda file: file.write(b"png"), "choose another folder")


def test_a_read_only_folder_is_refused_naming_it_and_the_fix(read_only_folder):
    with pytest.raises(WriteError, match=r"cannot write predictions into .*sub \(Read-only file system\); use it"):
        writable_folder(read_only_folder / "sub", "predictions", "use it")


def test_a_file_where_the_folder_should_be_is_refused_as_such(tmp_path):
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"cache \(a file stands where the folder should be\); set it"):
        writable_folder(tmp_path / "cache", "the cache", "set it")


def test_a_temporary_named_with_a_number_no_process_can_have_is_an_orphan_not_a_traceback(tmp_path):
    stray = tmp_path / "best.pt.99999999999999999999.tmp"  # os.kill would raise OverflowError
    stray.write_bytes(b"partial")
    assert is_orphan(stray) and remove_orphans(tmp_path) == [stray]


def test_a_name_too_long_for_the_file_system_ends_in_one_error_naming_it(tmp_path):
    """The temporary's `.<pid>.tmp` makes a name that just fits (255 bytes) one that does not."""
    path = tmp_path / ("p" * 250 + ".png")
    with pytest.raises(WriteError, match="the name is too long for the file system writing") as raised:
        write_atomically(path, lambda file: file.write(b"png"), "choose a shorter name")
    assert raised.value.errno == errno.ENAMETOOLONG and "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())
