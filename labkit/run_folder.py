"""A training run's folder: claimed by one run at a time, and written at a bounded cost.

One run per folder, checked before any photo is decoded: two notebook kernels training the same model with the same profile write into the same folder
(`checkpoints/unet-cpu/`); without a lock, the later finisher silently overwrites the other's
`best.pt`. The lock is an OS file lock (`fcntl.flock`) on `<run>/train.lock`, which the operating
system releases when the process ends however it ends, so a crashed run never leaves the folder
locked. Windows has no `fcntl`; there the folder is checked for writability only.

Checkpoints are written by a `CheckpointWriter` that spends at most a tenth of the run's time on
them (see its docstring).
"""

import contextlib
import os
import socket
import time
from pathlib import Path

from labkit import files
from labkit.checkpoint import save_checkpoint

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = "train.lock"
CHECKPOINT_TIME_SHARE = 0.1  # writing checkpoints may take at most this share of a run's time
INTERRUPTED = "interrupted.pt"  # the weights at Ctrl-C, kept until the run writes last.pt again


class RunFolderBusy(RuntimeError):
    """Another training run holds this run folder."""


def writable_folder(folder: Path) -> Path:
    """Create `folder` if needed and prove it takes files, naming it if not.

    Raises:
        PermissionError / NotADirectoryError / WriteError (read-only, full): one line naming the
            folder and the fix.
    """
    return files.writable_folder(folder, "checkpoints", "choose another folder with --output (output_dir) or "
                                 "--run-name (run_name)")


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
        write_holder(lock, run_dir / LOCK_NAME)
        files.remove_orphans(run_dir)  # temporaries of a run killed while writing a checkpoint
        try:
            yield run_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_holder(lock, path: Path) -> None:
    """Say in the lock file who holds it, for the message a second run gets. A disk too full for
    these few bytes has no room for a checkpoint either, so it stops the run before training."""
    holder = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    try:  # unbuffered, so closing the file does not retry a write the disk refused
        os.ftruncate(lock.fileno(), 0)
        os.write(lock.fileno(), holder.encode())
    except OSError as error:
        if error.errno in files.DISK_ERRORS:
            raise files.disk_error(error, path, files.FREE_SPACE_AND_RESUME) from None
        raise


class TimeShare:
    """Lets optional work (writing checkpoints, redrawing plots) run only while it has taken at
    most `share` of the time since this object was made."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.started = time.perf_counter()
        self.spent = 0.0

    def allows(self) -> bool:
        return self.spent <= self.share * (time.perf_counter() - self.started)

    @contextlib.contextmanager
    def spending(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent += time.perf_counter() - started


class CheckpointWriter:
    """Writes `best.pt` and `last.pt` into a run folder, spending at most CHECKPOINT_TIME_SHARE
    of the run's time on it.

    On a CPU an epoch takes seconds and both files are written after every epoch. On a GPU an
    epoch of a small split takes a fraction of a second, while `last.pt` (weights plus optimiser
    state, 200-280 MB for the gpu-profile models) takes about 0.4 s to write, so writing every
    epoch would more than double the run. Then epochs are skipped between writes: the best
    weights are copied to memory the moment they improve and written at the next write, so a
    skipped write only moves the resume point back by a few seconds of training.
    """

    def __init__(self, run_dir: Path, saved_epoch: int = 0) -> None:
        self.run_dir = run_dir
        self.time_share = TimeShare(CHECKPOINT_TIME_SHARE)
        self.pending_best: dict | None = None  # best weights not yet on disk
        self.saved_epoch = saved_epoch  # the epoch `last.pt` holds

    def due(self) -> bool:
        return self.time_share.allows()

    def write(self, name: str, checkpoint: dict) -> None:
        with self.time_share.spending():
            save_checkpoint(checkpoint, self.run_dir / name)

    def write_best(self) -> None:
        if self.pending_best is not None:
            self.write("best.pt", self.pending_best)
            self.pending_best = None

    def write_last(self, checkpoint: dict) -> None:
        """Write `last.pt`; an `interrupted.pt` left by an earlier stop is out of date from now on."""
        self.write_best()
        self.write("last.pt", checkpoint)
        self.saved_epoch = checkpoint["epoch"]
        (self.run_dir / INTERRUPTED).unlink(missing_ok=True)
