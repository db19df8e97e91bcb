"""One training run per run folder at a time, checked before any photo is decoded.

Two notebook kernels training the same model with the same profile write into the same folder
(`checkpoints/unet-cpu/`); without a lock, the later finisher silently overwrites the other's
`best.pt`. The lock is an OS file lock (`fcntl.flock`) on `<run>/train.lock`, which the operating
system releases when the process ends however it ends, so a crashed run never leaves the folder
locked. Windows has no `fcntl`; there the folder is checked for writability only.
"""

import contextlib
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = "train.lock"


class RunFolderBusy(RuntimeError):
    """Another training run holds this run folder."""


def writable_folder(folder: Path) -> Path:
    """Create `folder` if needed and prove it takes files, naming it if not.

    Raises:
        PermissionError / NotADirectoryError: one line naming the folder and the fix.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (PermissionError, NotADirectoryError, FileExistsError) as error:
        kind = PermissionError if isinstance(error, PermissionError) else NotADirectoryError
        raise kind(f"cannot write checkpoints into {folder} ({error.strerror or error}); choose another folder "
                   "with --output (output_dir) or --run-name (run_name)") from None
    return folder


@contextlib.contextmanager
def claimed(run_dir: Path):
    """Hold `run_dir` for one training run.

    Raises:
        RunFolderBusy: another live process trains into the same folder (it is named).
    """
    writable_folder(run_dir)
    if fcntl is None:
        yield run_dir
        return
    with open(run_dir / LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunFolderBusy(f"{run_dir} is in use by another training run ({holder}); wait for it to finish, "
                                "stop it, or train into another folder with --run-name (run_name)") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        try:
            yield run_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
