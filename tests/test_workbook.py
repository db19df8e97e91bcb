import base64
import json
import os
import warnings
from types import SimpleNamespace

import pytest

from labkit import data, train, workbook


def test_record_results_merges_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    workbook.record_results("unet", {"dice": 0.5})
    path = workbook.record_results("resnet34_unet", {"dice": 0.6})
    workbook.record_results("unet", {"iou": 0.4})
    assert json.loads(path.read_text()) == {"unet": {"dice": 0.5, "iou": 0.4}, "resnet34_unet": {"dice": 0.6}}


def test_run_record_warns_loudly_on_synthetic_data(synthetic_root):
    run = workbook.setup_notebook("smoke", synthetic_root)
    assert run.synthetic and "synthetic" in run._repr_markdown_().lower()


def test_the_banner_replaces_the_synthetic_data_warning_in_a_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = workbook.setup_notebook("smoke")
        data.resolve_root()  # as a later cell's training or evaluation does
    assert run.synthetic
    assert not [warning for warning in caught if issubclass(warning.category, data.SyntheticDataWarning)]


def test_trained_checkpoint_is_reused_instead_of_retraining(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    run = workbook.setup_notebook("smoke", synthetic_root)
    first = workbook.trained_checkpoint("unet", run)

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a matching checkpoint exists")

    monkeypatch.setattr(train, "fit", no_training)
    assert workbook.trained_checkpoint("unet", run) == first
    assert "Using" in capsys.readouterr().out


def test_trained_checkpoint_retrains_when_asked(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    run = workbook.setup_notebook("smoke", synthetic_root)
    workbook.trained_checkpoint("unet", run)
    calls = []

    def recording_fit(config, **kwargs):
        calls.append(config)
        return train.TrainResult(run_dir=train.run_dir_for(config))

    monkeypatch.setattr(train, "fit", recording_fit)
    workbook.trained_checkpoint("unet", run, retrain=True)
    assert len(calls) == 1


def write_notebook(path, *sources):
    import nbformat

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def test_workbook_executes_notebooks_in_order_into_reports(synthetic_root, tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    write_notebook(tmp_path / "notebooks" / "00_first.ipynb", "import os; print(os.environ['LABKIT_PROFILE'])")
    write_notebook(tmp_path / "notebooks" / "01_second.ipynb", "print(6 * 7)")
    executed = workbook.run_notebooks(profile="smoke", timeout=120)
    assert [path.name for path in executed] == ["00_first.ipynb", "01_second.ipynb"]
    outputs = [nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] for path in executed]
    assert outputs == ["smoke\n", "42\n"]


def test_without_a_dataset_the_run_says_once_that_it_uses_the_synthetic_set(tmp_path, monkeypatch, capsys, recwarn):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    write_notebook(tmp_path / "notebooks" / "00_first.ipynb", "print(1)")
    workbook.run_notebooks(profile="smoke", timeout=120)
    assert capsys.readouterr().out.count("No real dataset") == 1
    assert not [warning for warning in recwarn if issubclass(warning.category, data.SyntheticDataWarning)]


def test_a_labkit_home_without_notebooks_runs_the_clones_notebooks(tmp_path, monkeypatch):
    """LABKIT_HOME keeps data, checkpoints and reports apart; the notebooks still come from the clone."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    found = workbook.notebook_paths()
    assert [path.parent for path in found] == [workbook.CLONE_NOTEBOOKS] * 7
    assert [path.name[:2] for path in found] == ["00", "01", "02", "03", "04", "05", "06"]


def test_no_notebooks_anywhere_is_an_error_naming_where_it_looked_not_an_empty_success(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(workbook, "CLONE_NOTEBOOKS", tmp_path / "clone" / "notebooks")
    with pytest.raises(FileNotFoundError, match=r"no numbered notebooks .* in .*home/notebooks or .*clone/notebooks"):
        workbook.run_notebooks(profile="smoke")


def test_in_place_stores_the_outputs_in_the_notebook_that_ran(synthetic_root, tmp_path, monkeypatch):
    """With a LABKIT_HOME of its own, the clone's notebooks run, and in place means theirs."""
    import nbformat

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    monkeypatch.setattr(workbook, "CLONE_NOTEBOOKS", tmp_path / "clone" / "notebooks")
    write_notebook(tmp_path / "clone" / "notebooks" / "00_only.ipynb", "print(6 * 7)")
    executed = workbook.run_notebooks(profile="smoke", timeout=120, in_place=True)
    assert executed == [tmp_path / "clone" / "notebooks" / "00_only.ipynb"]
    assert nbformat.read(executed[0], as_version=4).cells[0].outputs[0]["text"] == "42\n"
    assert not (tmp_path / "home" / "notebooks").exists()


SLIDER_CELL = ("import ipywidgets, matplotlib.pyplot as plt\nfrom labkit import viz\n"
               "def draw(index):\n    fig, ax = plt.subplots()\n    ax.plot([0, index])\n    return fig\n"
               "viz.figure_sliders(draw, index=ipywidgets.IntSlider(1, min=0, max=3))")


@pytest.mark.parametrize("in_place", [True, False], ids=["in place", "copies in reports"])
def test_slider_cells_store_their_widget_in_place_and_only_the_picture_in_copies(synthetic_root, tmp_path, monkeypatch,
                                                                                in_place):
    """The committed notebooks are opened by people who move the sliders; `make lab`'s copies are not."""
    import nbformat

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    monkeypatch.setenv("LABKIT_HEADLESS", "1")  # as `make test` sets it
    write_notebook(tmp_path / "notebooks" / "00_slider.ipynb", SLIDER_CELL)
    [executed] = workbook.run_notebooks(profile="smoke", timeout=120, in_place=in_place)
    [output] = nbformat.read(executed, as_version=4).cells[0].outputs
    assert "image/png" in output["data"]
    assert ("application/vnd.jupyter.widget-view+json" in output["data"]) == in_place


PHOTO_AND_CHART_CELLS = (
    "import numpy as np, matplotlib.pyplot as plt\nfrom labkit import viz, workbook\n"
    "run = workbook.setup_notebook('smoke')",
    "from PIL import Image\nrng = np.random.default_rng(0)\n"
    "smooth = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((160, 160), Image.BILINEAR)\n"
    "photo = np.clip(np.asarray(smooth) + rng.normal(0, 6, (160, 160, 3)), 0, 255).astype(np.uint8)  # gradients, grain\n"
    "viz.show_samples([photo]);",
    "fig, ax = plt.subplots()\nax.plot([0, 1]);",
)


def test_after_setup_figures_of_photos_are_stored_as_jpeg_and_charts_as_png(synthetic_root, tmp_path, monkeypatch):
    """Photos are most of a notebook's weight, and a PNG of a photo is about three times its JPEG."""
    import nbformat

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    write_notebook(tmp_path / "notebooks" / "00_figures.ipynb", *PHOTO_AND_CHART_CELLS)
    [executed] = workbook.run_notebooks(profile="smoke", timeout=120)
    _, photo_cell, chart_cell = nbformat.read(executed, as_version=4).cells
    [photo_figure] = [output["data"] for output in photo_cell.outputs if "text/plain" in output.get("data", {})]
    [chart_figure] = [output["data"] for output in chart_cell.outputs if "text/plain" in output.get("data", {})]
    assert "image/jpeg" in photo_figure and "image/png" not in photo_figure
    assert base64.b64decode(photo_figure["image/jpeg"]).startswith(b"\xff\xd8")  # a JPEG's first bytes
    assert "image/png" in chart_figure and "image/jpeg" not in chart_figure


def test_the_workbook_stores_figures_inline_even_when_a_script_backend_is_set(synthetic_root, tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as `make test` sets it; restored after the test
    write_notebook(tmp_path / "notebooks" / "00_plot.ipynb", "import matplotlib; print(matplotlib.get_backend())")
    [executed] = workbook.run_notebooks(profile="smoke", timeout=120)
    assert "inline" in nbformat.read(executed, as_version=4).cells[0].outputs[0]["text"]


def test_relative_folders_in_the_environment_mean_where_the_workbook_was_started(synthetic_root, tmp_path, monkeypatch):
    """`LABKIT_DATA=../data make lab`: the kernels work in notebooks/, the folders were named from the clone."""
    import nbformat

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABKIT_HOME", "home")
    monkeypatch.setenv("LABKIT_DATA", os.path.relpath(synthetic_root, tmp_path))
    write_notebook(tmp_path / "home" / "notebooks" / "00_where.ipynb",
                   "import os\nfrom labkit import data, paths\nprint(data.resolve_root(os.environ['LABKIT_DATA']))\n"
                   "print(paths.project_dir())")
    [executed] = workbook.run_notebooks(profile="smoke", timeout=120)
    printed = nbformat.read(executed, as_version=4).cells[0].outputs[0]["text"].split()
    assert printed == [str(synthetic_root.resolve()), str((tmp_path / "home").resolve())]


def test_a_failing_notebook_names_itself_and_keeps_its_executed_copy(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA", str(synthetic_root))
    write_notebook(tmp_path / "notebooks" / "00_broken.ipynb", "raise ValueError('boom')")
    with pytest.raises(RuntimeError, match="00_broken.ipynb failed"):
        workbook.run_notebooks(profile="smoke", timeout=120)
    assert (tmp_path / "reports" / "notebooks" / "00_broken.ipynb").is_file()


def record_of_epoch(epoch: int):
    from labkit.history import EpochRecord

    return EpochRecord(epoch=epoch, lr=1e-3, train_loss=1.0, valid_dice=0.5, valid_iou=0.4, valid_dice_dataset=0.5,
                       epoch_seconds=1.0, train_images_per_second=10.0)


def test_live_curves_skip_redraws_over_their_time_share_but_draw_the_last_epoch(monkeypatch):
    import matplotlib.pyplot as plt

    from labkit import viz

    monkeypatch.setattr(workbook, "LIVE_PLOT_TIME_SHARE", 0.0)  # any drawing is over budget
    monkeypatch.setattr("IPython.display.display", lambda display_id: SimpleNamespace(update=lambda figure: None))
    drawn = []
    monkeypatch.setattr(viz, "plot_history", lambda histories: drawn.append(len(histories["unet"])) or plt.figure())
    redraw = workbook.live_curves("unet", epochs=4)
    history = []
    for epoch in range(1, 5):
        history.append(record_of_epoch(epoch))
        redraw(history)
    assert drawn == [1, 4]


def test_live_curves_outside_a_notebook_draw_nothing():
    import matplotlib.pyplot as plt

    open_figures = len(plt.get_fignums())
    workbook.live_curves("unet", epochs=1)([record_of_epoch(1)])  # no display to draw into: no error either
    assert len(plt.get_fignums()) == open_figures


def test_stored_outputs_show_paths_relative_to_the_project(tmp_path, monkeypatch):
    project = tmp_path / "project"
    monkeypatch.setenv("LABKIT_HOME", str(project))
    assert workbook.shown_path(project / "data" / "synthetic") == "data/synthetic"
    assert workbook.shown_path(tmp_path / "shared" / "sample") == "../shared/sample"
    run = workbook.NotebookRun(root=tmp_path / "shared" / "sample", synthetic=False, profile="cpu", device="cpu")
    record = run._repr_markdown_()
    assert str(tmp_path) not in record and "`../shared/sample`" in record
    assert "CC BY-SA 4.0" in record  # real photos are credited where they appear
    assert str(tmp_path) not in repr(run)  # the plain-text copy a notebook stores beside the Markdown


def test_live_curves_clear_their_figure_once_done(monkeypatch):
    import matplotlib.pyplot as plt

    from labkit import viz

    shown = []
    handle = SimpleNamespace(update=lambda obj, raw=False: shown.append((obj, raw)))
    monkeypatch.setattr("IPython.display.display", lambda display_id: handle)
    monkeypatch.setattr(viz, "plot_history", lambda histories: plt.figure())
    curves = workbook.live_curves("unet", epochs=1)
    curves([record_of_epoch(1)])
    curves.clear()
    assert len(shown) == 2 and shown[-1] == ({}, True)  # the figure, then an empty output in its place


def test_the_run_says_how_long_the_notebook_took(synthetic_root, monkeypatch):
    clock = iter([100.0, 250.0])
    monkeypatch.setattr(workbook.time, "perf_counter", lambda: next(clock))
    run = workbook.setup_notebook("smoke", synthetic_root)
    assert run.elapsed().startswith("Time since the run record: 2.5 minutes (smoke profile, cpu,")
    assert "started" not in repr(run)


def test_the_terminal_is_shown_the_running_cell_and_a_headless_kernels_training_lines(tmp_path, capfd):
    """`make lab` names the cell that runs, and training epochs reach the terminal, not the notebook."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    source = tmp_path / "01_demo.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("import time\ntime.sleep(2.5)"),
                                       new_code_cell("from labkit import workbook\nworkbook.to_terminal('unet epoch 3/40')")]),
                   source)
    environment = {**os.environ, "LABKIT_HEADLESS": "1"}
    workbook.execute_notebook(source, tmp_path / "out.ipynb", timeout=120, environment=environment, show_progress=True)
    terminal = capfd.readouterr().err
    assert "cell 0: import time" in terminal and "cell 1: from labkit import workbook" in terminal
    assert "unet epoch 3/40" in terminal
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert not executed.cells[1].outputs  # nothing of it in the notebook


def test_to_terminal_says_nothing_where_a_person_watches(monkeypatch, capfd):
    monkeypatch.delenv("LABKIT_HEADLESS", raising=False)
    workbook.to_terminal("unet epoch 1/40")
    assert "epoch" not in capfd.readouterr().err


PHOTO_SLIDERS_CELL = "viz.figure_sliders(draw, photo=ipywidgets.IntSlider(0, max=5), threshold=ipywidgets.FloatSlider(0.5, max=1))"


def test_live_slider_cells_do_not_leave_the_runner_waiting_out_their_time_limit(tmp_path):
    """nbclient issue 312: after a cell that shows a live widget, the client could wait the cell's
    whole time limit for a reply that had arrived; `--in-place` allows an hour a cell and once
    stalled that hour. Slider cells with three photos a picture made it happen nearly every time."""
    import datetime

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    setup = ("import time\nimport ipywidgets\nimport numpy as np\nfrom labkit import viz\n\n"
             "def draw(photo, threshold):\n    fig, axes = viz.photo_subplots(1, 3, figsize=(9, 3))\n"
             "    for k, ax in enumerate(axes):\n"
             "        ax.imshow(np.random.RandomState(photo + k).randint(0, 255, (256, 256, 3), dtype=np.uint8))\n"
             "    time.sleep(0.3)\n    return fig")
    source = tmp_path / "sliders.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(setup), *[new_code_cell(PHOTO_SLIDERS_CELL) for _ in range(4)],
                                       new_code_cell("print('after the sliders')")]), source)
    time_limit = 60
    workbook.execute_notebook(source, tmp_path / "out.ipynb", timeout=time_limit,
                              environment=workbook.kernel_environment("smoke", headless=False))
    cells = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells
    stamp = datetime.datetime.fromisoformat
    waits = [(stamp(after.metadata.execution["iopub.execute_input"]) - stamp(before.metadata.execution["shell.execute_reply"]))
             .total_seconds() for before, after in zip(cells, cells[1:])]
    assert any(output.get("data", {}).get("application/vnd.jupyter.widget-view+json") for output in cells[1].outputs)
    assert max(waits) < time_limit / 4, f"the runner waited {max(waits):.0f} s between cells; each wait: {waits}"
