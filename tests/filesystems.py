"""Real small and read-only file systems for fault tests.

A tmpfs mounted inside the test's own folder (root may mount one, and CI runs as root) and
unmounted whatever happens. Where mounting is not permitted (a developer without root) the test
is skipped with that reason: a loop file needs root as well, and a file-size limit
(RLIMIT_FSIZE) bounds each file rather than the disk, which is not the fault being tested.
"""

import contextlib
import subprocess
from pathlib import Path

import pytest


def run_mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of `size` ("3M", "4608K") mounted at `folder` for the block (skips if it cannot be)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = run_mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {folder} (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # still busy: detach it


def remount_read_only(folder: Path) -> None:
    """Make a tmpfs from `tmpfs` read-only: writes fail with EROFS, not a permission error."""
    remounted = run_mount("-o", "remount,ro", str(folder))
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount {folder} read-only: {remounted.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A factory: `small_disk("3M")` is a folder on a fresh tmpfs of that size."""
    with contextlib.ExitStack() as stack:
        yield lambda size, name="disk": stack.enter_context(tmpfs(tmp_path / name, size))


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder on a read-only tmpfs."""
    with tmpfs(tmp_path / "read-only", "1M") as folder:
        remount_read_only(folder)
        yield folder
