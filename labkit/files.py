"""Files written whole or not at all, and one-line errors for a folder or disk that refuses them.

Every file labkit writes (checkpoints, histories, decoded caches, predictions) goes first to a
temporary file `<name>.<pid>.tmp` beside it and is renamed over its target only when complete, so
Ctrl-C, a killed process or a full disk never leaves a half-written file in place of a good one.
The pid in the name says whose temporary it is: `remove_orphans` deletes those of processes that
are gone (a SIGKILL leaves its temporary behind), and never one that a live process is writing.
"""

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Write errors a user fixes by freeing space or choosing another folder, in words.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.ENAMETOOLONG: "the name is too long for the file system",
}
TEMPORARY_SUFFIX = ".tmp"
# The fix for a run folder's file that could not be written: what a run saved so far is kept.
FREE_SPACE_AND_RESUME = "free some space and train again (--resume continues from the last checkpoint)"


class WriteError(OSError):
    """A file or folder that cannot be written for a reason the user can fix (full disk, quota,
    read-only file system); its text is one line naming the path and the fix. `errno` is kept."""

    def __str__(self) -> str:
        return self.strerror


def disk_error(error: OSError, path: str | Path, fix: str) -> WriteError:
    """`error` (errno in DISK_ERRORS) as one line: what happened, writing which path, and the fix."""
    return WriteError(error.errno, f"{DISK_ERRORS[error.errno]} writing {path}; {fix}", str(path))


class RecordingFile:
    """A binary file that remembers the OSError a write raised: torch.save turns it into its own
    RuntimeError ("enforce fail at inline_container.cc ... unexpected pos"), losing the errno."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def temporary_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f"{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object], fix: str) -> Path:
    """Write `path` through `write(file)` into this process's temporary file, then rename it over
    `path`; on any failure or interruption the temporary is removed and `path` keeps what it held.

    Args:
        write: writes the whole content into the binary file it is given.
        fix: what the user should do if the disk refuses the file (one clause).

    Raises:
        WriteError: a full disk, used-up quota, file-size limit or read-only file system, in one
            line naming `path` and `fix`. Other errors pass through unchanged.
    """
    path = Path(path)
    temporary = temporary_path(path)
    recorder = None
    try:
        with open(temporary, "wb") as file:
            recorder = RecordingFile(file)
            write(recorder)
        os.replace(temporary, path)
    except BaseException as error:
        with_cleanup_errors_ignored(lambda: temporary.unlink(missing_ok=True))
        cause = recorder.error if recorder is not None and recorder.error is not None else error
        if isinstance(cause, OSError) and cause.errno in DISK_ERRORS:
            raise disk_error(cause, path, fix) from None
        if cause is not error:
            raise cause from None  # the OSError behind torch's RuntimeError
        raise
    return path


def with_cleanup_errors_ignored(cleanup: Callable[[], object]) -> None:
    """Run a clean-up step that may itself fail (a read-only folder) without hiding the error
    that made it necessary."""
    try:
        cleanup()
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    """Whether process `pid` still exists on this machine (a reaped process does not)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there; keep every temporary
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no pid at all (x.99999999999999999999.tmp)
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def writer_pid(path: Path) -> int | None:
    """The pid in a temporary's name `<name>.<pid>.tmp`, or None for any other file."""
    if not path.name.endswith(TEMPORARY_SUFFIX):
        return None
    pid = path.name[: -len(TEMPORARY_SUFFIX)].rpartition(".")[2]
    return int(pid) if pid.isdigit() else None


def is_orphan(path: Path) -> bool:
    """A temporary whose writer is gone: nobody will ever finish or remove it."""
    pid = writer_pid(path)
    return pid is not None and not process_alive(pid)


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temporaries in `folder` whose writing process is gone; returns what was deleted."""
    removed = []
    for path in sorted(Path(folder).glob(f"*{TEMPORARY_SUFFIX}")):
        if is_orphan(path):
            with_cleanup_errors_ignored(lambda: path.unlink(missing_ok=True))
            removed.append(path)
    return removed


def writable_folder(folder: Path, contents: str, fix: str) -> Path:
    """Create `folder` if needed and prove it takes files, before any work depends on it.

    Args:
        contents: what goes there, for the message ("checkpoints", "the decoded-image cache").
        fix: how to choose another folder (one clause naming the option or variable).

    Raises:
        PermissionError, NotADirectoryError or WriteError (read-only, full): one line naming the
            folder, the reason and `fix`.
    """
    def refused(reason: str) -> str:
        return f"cannot write {contents} into {folder} ({reason}); {fix}"

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(refused("a file stands where the folder should be")) from None
    except PermissionError as error:
        raise PermissionError(refused(error.strerror or "permission denied")) from None
    except OSError as error:
        raise WriteError(error.errno, refused(error.strerror or type(error).__name__), str(folder)) from None
    return folder


def not_a_file(path: Path) -> str | None:
    """What `path` is when it exists but is not a regular file ("a named pipe (FIFO)", "a
    folder"...), else None. Opening a FIFO would wait forever for a writer."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((name for test, name in kinds.items() if test(mode)), None)
