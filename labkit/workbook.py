"""The main job (`make lab`): execute notebooks 00 to 06 in order, as a student would.

Executed copies go to `reports/notebooks/` (the committed notebooks stay as they are); the
figures and `reports/results.json` the notebooks write land under `reports/`.
"""

import json
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from labkit import allocator, data, paths
from labkit.checkpoint import CheckpointInfo, load_checkpoint
from labkit.config import make_config, resolve_profile
from labkit.device import resolve_device
from labkit.history import EpochRecord

if TYPE_CHECKING:
    import nbformat


PHOTO_CREDIT = ("Photos: the Oxford-IIIT Pet Dataset by O. M. Parkhi, A. Vedaldi, A. Zisserman and C. V. Jawahar "
                "(\"Cats and Dogs\", CVPR 2012), CC BY-SA 4.0; the copyright of each photo remains with its owner.")
LIVE_PLOT_TIME_SHARE = 0.1  # live training curves may take at most this share of the training time


@dataclass
class NotebookRun:
    """What a notebook runs on; its first cell prints it so stored outputs say where they came from."""

    root: Path
    synthetic: bool
    profile: str
    device: str
    started: float = field(default_factory=lambda: time.perf_counter(), repr=False, compare=False)  # at setup

    def elapsed(self) -> str:
        """How long the notebook has run since `setup_notebook` made its run record, with what it
        ran on, in one line."""
        seconds = time.perf_counter() - self.started
        taken = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"
        threads = torch.get_num_threads()
        return (f"Time since the run record: {taken} ({self.profile} profile, {self.device}, "
                f"{threads} CPU thread{'s' if threads > 1 else ''}).")

    def __repr__(self) -> str:  # the plain-text twin of the record, stored beside it in the notebook
        return (f"NotebookRun(root={shown_path(self.root)!r}, synthetic={self.synthetic}, "
                f"profile={self.profile!r}, device={self.device!r})")

    def _repr_markdown_(self) -> str:
        lines = [f"**Run record** — data: `{shown_path(self.root)}` ({'synthetic' if self.synthetic else 'real photos'}), "
                 f"profile: `{self.profile}`, device: `{self.device}`, torch {torch.__version__}, "
                 f"Python {platform.python_version()}."]
        if self.synthetic:
            lines.insert(0, "> ⚠️ **Running on the built-in synthetic dataset**, not real photos: numbers and "
                            "figures below only show that the pipeline works. Get the real dataset with "
                            "`python -m labkit download` (~800 MB) and run again.\n")
        else:
            lines.append(f"\n{PHOTO_CREDIT}")
        return "\n".join(lines)


def shown_path(path: str | Path) -> str:
    """A path as a reader of the stored outputs should see it: relative to the project when it lies
    in the project or beside it (`../shared/...`), so no machine's own folders end up in a notebook."""
    path = Path(path).resolve()
    project = paths.project_dir().resolve()
    if path.is_relative_to(project.parent):
        return os.path.relpath(path, project)
    return str(path)


def setup_notebook(profile: str = "auto", data_root: str | Path | None = None) -> NotebookRun:
    """Resolve the profile, dataset and device once, at the top of every notebook.

    On synthetic data the run record's banner says so, loudly, at the top; the same warning from
    every later cell that loads data would only repeat it, so it is silenced for this kernel.
    Figures of photos are stored as the smaller of JPEG and PNG from here on (`viz.store_photo_pictures`)."""
    from labkit import viz

    warnings.filterwarnings("ignore", category=data.SyntheticDataWarning)
    viz.store_photo_pictures()
    root = data.resolve_root(data_root)
    return NotebookRun(root=root, synthetic=data.is_synthetic(root), profile=resolve_profile(profile),
                       device=str(resolve_device("auto")))


def record_results(section: str, values: dict) -> Path:
    """Merge `values` into `section` of reports/results.json (written atomically), so notebooks
    that add to the same section keep each other's numbers."""
    path = paths.reports_dir() / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault(section, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2, sort_keys=True))
    os.replace(temporary, path)
    return path


class LiveCurves:
    """An `on_epoch_end` callback that redraws the loss and Dice curves in place after each epoch
    (make it with `live_curves`); `clear()` empties the picture once it has served."""

    def __init__(self, name: str, epochs: int | None = None) -> None:
        from IPython.display import display

        from labkit.run_folder import TimeShare

        self.name, self.epochs = name, epochs
        self.handle = display(display_id=True)  # None outside IPython
        self.time_share = TimeShare(LIVE_PLOT_TIME_SHARE)

    def __call__(self, history: list[EpochRecord]) -> None:
        import matplotlib.pyplot as plt

        from labkit import viz

        last = history[-1]
        final = self.epochs is not None and last.epoch >= self.epochs
        to_terminal(f"{self.name} epoch {last.epoch}" + (f"/{self.epochs}" if self.epochs else "")
                    + f": loss {last.train_loss:.4f}, valid Dice {last.valid_dice:.4f} ({last.epoch_seconds:.1f} s)")
        if self.handle is None or not (final or self.time_share.allows()):
            return
        with self.time_share.spending():
            figure = viz.plot_history({self.name: history})
            self.handle.update(figure)
            plt.close(figure)

    def clear(self) -> None:
        """Replace the live figure by nothing, so a notebook that plots the finished curves again
        does not keep the same curves twice."""
        if self.handle is not None:
            self.handle.update({}, raw=True)


def to_terminal(line: str) -> None:
    """In a headless kernel (`make lab`), one line for the terminal that runs it: the kernel's own
    stderr, not the notebook's output. Elsewhere nothing (a person watches the live curves)."""
    from labkit.viz import headless

    if headless() and sys.__stderr__ is not None:
        print(f"    {line}", file=sys.__stderr__, flush=True)


def live_curves(name: str, epochs: int | None = None) -> LiveCurves:
    """An `on_epoch_end` callback that redraws the loss and Dice curves in place after each epoch.

    Drawing the figure takes about 0.15 s, longer than a whole epoch of a small split on a GPU, so
    epochs are skipped whenever drawing has taken more than LIVE_PLOT_TIME_SHARE of the time so
    far. The final epoch (`epochs`, when given) is always drawn. Outside a notebook there is no
    display to draw into, and the callback does nothing. `.clear()` removes the figure afterwards.
    """
    return LiveCurves(name, epochs)


def trained_checkpoint(model: str, run: NotebookRun, retrain: bool = False,
                       on_epoch_end: Callable[[list[EpochRecord]], None] | None = None,
                       progress: bool = False) -> Path:
    """The best checkpoint of `model` for this run's profile and data: loaded when one exists that
    was trained with the same configuration, trained now (saying so) otherwise.

    Args:
        on_epoch_end: passed to `fit` when training happens, e.g. `live_curves(model)`.
        progress: progress bars while training; off by default, so a stored notebook keeps one
            summary line per model instead of a bar per epoch.
    """
    from labkit.resume import config_differences
    from labkit.train import fit, run_dir_for

    config = make_config(model, run.profile, data_root=str(run.root))
    best = run_dir_for(config) / "best.pt"
    if best.is_file() and not retrain:
        saved = load_checkpoint(best)
        if not config_differences(saved["config"], config) and saved["data"]["root"] == str(run.root):
            info = CheckpointInfo.from_checkpoint(saved, best)
            print(f"Using {shown_path(best)} (epoch {info.epoch}, valid Dice {info.best.valid_dice:.4f}).")
            return best
        print(f"{shown_path(best)} was trained differently; training {model} again.")
    else:
        print(f"Training {model} with the {run.profile!r} profile" + (" (asked to retrain)." if retrain else
              f" (no checkpoint at {shown_path(best)} yet)."))
    result = fit(config, progress=progress, on_epoch_end=on_epoch_end)
    if result.best is not None:
        seconds = sum(record.epoch_seconds for record in result.history)
        print(f"{model}: {len(result.history)} epochs in {seconds:.0f} s of training, best valid Dice "
              f"{result.best.valid_dice:.4f} at epoch {result.best.epoch}; saved {shown_path(result.best_checkpoint)}.")
    return result.best_checkpoint


# The notebooks of the clone this labkit was installed from (`pip install -e .`).
CLONE_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_paths() -> list[Path]:
    """The numbered notebooks: the project's own (`$LABKIT_HOME/notebooks` where that folder holds
    some), else the clone's, so that a LABKIT_HOME kept apart for data and reports still runs them.

    Raises:
        FileNotFoundError: neither folder holds a numbered notebook; names both.
    """
    folders = list(dict.fromkeys([paths.project_dir() / "notebooks", CLONE_NOTEBOOKS]))
    for folder in folders:
        found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
        if found:
            return found
    raise FileNotFoundError(f"no numbered notebooks (00_*.ipynb, 01_*.ipynb, ...) in {' or '.join(map(str, folders))}; "
                            "run the workbook from the project's clone")


QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]  # the kernel's own log: errors only


# Folders a kernel reads from its environment. A kernel works in notebooks/, so a relative folder
# given where the workbook was started is made absolute before it gets there.
FOLDER_VARIABLES = ("LABKIT_DATA", "LABKIT_HOME", "LABKIT_CACHE")


def kernel_environment(profile: str, headless: bool = True) -> dict[str, str]:
    """What a workbook kernel starts with: this process's environment with its folders made
    absolute (FOLDER_VARIABLES), `LABKIT_PROFILE`, labkit's memory reuse (`labkit.allocator`), and
    no script backend for matplotlib, since the notebooks are run to be read and their figures must
    be stored inline (MPLBACKEND=Agg would prevent it).

    Args:
        headless: set `LABKIT_HEADLESS`, so that slider cells show their first picture without a
            live widget (labkit.viz); False removes it, so that they store the widget with it.
    """
    from labkit.viz import HEADLESS

    environment = {name: value for name, value in os.environ.items() if name not in ("MPLBACKEND", HEADLESS)}
    for name in FOLDER_VARIABLES:
        if environment.get(name):
            environment[name] = str(Path(environment[name]).expanduser().absolute())
    environment["LABKIT_PROFILE"] = profile
    if headless:
        environment[HEADLESS] = "1"
    return allocator.environment_for_children(environment)


class CellProgress:
    """A progress bar over one notebook's code cells that names the running cell and keeps its
    clock moving while a long cell runs (nbclient calls `start` before each cell)."""

    def __init__(self, notebook: "nbformat.NotebookNode", name: str, refresh_seconds: float = 2.0) -> None:
        self.code_cells = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
        self.bar = tqdm(total=len(self.code_cells), desc=name.removesuffix(".ipynb"), unit="cell",
                        bar_format="{desc}: {n_fmt}/{total_fmt} cells [{elapsed}] {postfix}")
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self.tick, args=(refresh_seconds,), daemon=True)
        self.ticker.start()

    def tick(self, seconds: float) -> None:
        while not self.stopped.wait(seconds):
            self.bar.refresh()

    def start(self, cell: "nbformat.NotebookNode", cell_index: int, **_) -> None:
        if cell.cell_type != "code":
            return
        self.bar.n = self.code_cells.index(cell_index)
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        self.bar.set_postfix_str(f"cell {cell_index}: {first[:60]}")

    def close(self) -> None:
        self.stopped.set()
        self.bar.n = self.bar.total
        self.bar.set_postfix_str("done")
        self.bar.close()


SHELL_POLL_SECONDS = 1.0


def poll_shell_in_slices(kernel_client, seconds: float = SHELL_POLL_SECONDS) -> None:
    """Make a kernel client wait for each shell reply in slices of `seconds`, up to the same limit.

    After a cell that shows a live widget the client can wait out the cell's whole time limit for a
    reply that has already arrived (nbclient issue 312): its single poll of the shell socket misses
    the wake-up. An in-place run (`python -m labkit workbook --in-place`) stores live slider widgets
    and allows an hour a cell, so a missed wake-up once stalled it for that hour; a fresh poll finds
    the waiting reply at once."""
    from queue import Empty

    wait = kernel_client.shell_channel.get_msg

    async def get_msg(timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = seconds if deadline is None else max(0.0, min(seconds, deadline - time.monotonic()))
            try:
                return await wait(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    kernel_client.shell_channel.get_msg = get_msg


def execute_notebook(source: Path, target: Path, timeout: int, environment: dict[str, str] | None = None,
                     show_progress: bool = False) -> None:
    """Run one notebook in a fresh kernel with `notebooks/` as its working folder; the executed copy
    is written even when a cell fails, so the error can be read in context.

    Args:
        environment: the kernel's environment (default: this process's).
        show_progress: a bar naming the running cell (see `CellProgress`).
    """
    import nbformat  # here, not at the top: every notebook imports this module, and nbformat's
    from nbclient import NotebookClient  # schema checks take a second and more to import
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(source, as_version=4)
    progress = CellProgress(notebook, source.name) if show_progress else None
    # nbclient's default transport (TCP on 127.0.0.1), as nbval uses: with local "ipc" sockets the
    # client once waited forever on an idle kernel here. The connection is signed with the
    # connection file's key; the kernel's log warning that it is not encrypted is left out.
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}}, extra_arguments=QUIET_KERNEL,
                            on_cell_start=progress.start if progress else None,
                            on_notebook_start=lambda **_: poll_shell_in_slices(client.kc))
    try:
        client.execute(env=dict(os.environ) if environment is None else environment)
    except CellExecutionError as error:
        raise RuntimeError(f"{source.name} failed; read the executed copy at {target}\n{error}") from None
    finally:
        if progress:
            progress.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)


def run_notebooks(profile: str = "auto", timeout: int = 3600, in_place: bool = False) -> list[Path]:
    """Execute every numbered notebook, each in a kernel started with `kernel_environment(profile)`;
    returns the executed copies.

    Args:
        in_place: overwrite the notebooks in notebooks/ with their outputs (how the committed
            outputs are refreshed) instead of writing copies to reports/notebooks/. Their slider
            cells then store the live widget beside the first picture, for the people who open
            them; copies in reports/ show the picture only, as no one moves a slider in `make lab`.
    """
    notebooks = notebook_paths()  # before anything is made: a missing folder is said at once
    environment = kernel_environment(profile, headless=not in_place)
    root = data.chosen_root()  # a $LABKIT_DATA without the dataset is refused here, before any kernel starts
    if root is None or data.is_synthetic(root):  # said once, here; the first kernel makes the set
        root = root or data.synthetic_root()
        print(f"No real dataset in {data.default_root()}: the workbook runs on the synthetic set at {root}.\n"
              "For the real photos run `python -m labkit download` (~800 MB), then `make lab` again.")
    output = paths.reports_dir() / "notebooks"
    executed = []
    for number, source in enumerate(notebooks, start=1):
        print(f"[{number}/{len(notebooks)}] {source.name}", flush=True)
        started = time.perf_counter()
        target = source if in_place else output / source.name  # in place: the very file that was run
        execute_notebook(source, target, timeout, environment, show_progress=True)
        print(f"{source.name}: {time.perf_counter() - started:.0f} s", flush=True)
        executed.append(target)
    print(f"Executed notebooks: {executed[0].parent if executed else output}\nFigures: {paths.figures_dir()}")
    return executed
