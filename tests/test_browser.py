"""What a student sees in JupyterLab: notebooks 00, 03 and 05 opened in a real browser.

The browser tests start JupyterLab from this environment on 127.0.0.1 (a free port, a token) in a
temporary copy of the notebooks, with the smoke profile and a temporary LABKIT_HOME, and drive
Debian's Chromium with Playwright: Run All Cells, then move every slider by keyboard and by mouse
and watch the picture change. Screenshots go to the test's temporary folder (printed with -s).
They need Chromium (`apt-get install chromium`, or $LABKIT_CHROMIUM) and the `playwright`
package (`pip install -e ".[browser]"`); where either is missing they are skipped, except in CI
($CI set), where they fail. The first tests read the committed notebooks and need no browser.
"""

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest

from labkit import viz

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"00": "00_data_exploration.ipynb", "03": "03_training.ipynb", "05": "05_inference_gallery.ipynb"}
RUN_ORDER = ["00", "03", "05"]  # 05 predicts with the checkpoints 03 trains
WIDGET_NOTEBOOKS = ["00", "05"]
SLIDERS = [("00", "photo"), ("05", "photo"), ("05", "threshold")]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MAGIC = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8"}  # the first bytes of each kind of picture
SERVER_START_SECONDS = 90
PAGE_LOAD_SECONDS = 120
NOTEBOOK_BYTES = 1_000_000  # each committed notebook, stored figures and all: quick to open in a browser and on GitHub
RUN_ALL_SECONDS = 400  # per notebook; the smoke profile needs about a minute on 2 cores
REDRAW_SECONDS = 30


def stored(name: str) -> dict:
    return json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))


def widget_cell_index(notebook: dict) -> int:
    [index] = [index for index, cell in enumerate(notebook["cells"])
               if cell["cell_type"] == "code" and "figure_sliders(" in "".join(cell["source"])]
    return index


# --- the committed notebooks, as a browser receives them ------------------------------------------


COMMITTED = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("name", COMMITTED, ids=lambda path: path.stem)
def test_each_committed_notebook_stays_small_enough_to_open_quickly(name):
    """Stored PNGs of photos once took the notebooks to 7 MB together; photos are stored as JPEG now."""
    assert name.stat().st_size < NOTEBOOK_BYTES


@pytest.mark.parametrize("name", COMMITTED, ids=lambda path: path.stem)
def test_no_stored_figure_has_a_path_printed_above_it(name):
    for cell in stored(name.name)["cells"]:
        outputs = cell.get("outputs", [])
        if any(kind.startswith("image/") for output in outputs for kind in output.get("data", {})):
            texts = ["".join(output.get("data", {}).get("text/plain", output.get("text", ""))) for output in outputs]
            assert not [text for text in texts if "PosixPath(" in text], "".join(cell["source"])


@pytest.mark.parametrize("key", WIDGET_NOTEBOOKS)
def test_stored_slider_cells_carry_a_picture_for_views_that_cannot_run_widgets(key):
    notebook = stored(NOTEBOOKS[key])
    [view] = notebook["cells"][widget_cell_index(notebook)]["outputs"]
    assert WIDGET_VIEW in view["data"]
    [(mime, picture)] = [(mime, data) for mime, data in view["data"].items() if mime.startswith("image/")]
    assert base64.b64decode(picture).startswith(MAGIC[mime])


def test_figure_sliders_display_the_widget_with_a_png_of_the_first_picture(monkeypatch):
    import ipywidgets

    shown, drawn = [], []
    monkeypatch.delenv("LABKIT_HEADLESS", raising=False)
    monkeypatch.setattr("IPython.display.display", lambda *objects, **options: shown.append((objects, options)))

    def draw(index, threshold):
        drawn.append((index, threshold))
        return plt.subplots()[0]

    viz.figure_sliders(draw, index=ipywidgets.IntSlider(2, max=9), threshold=ipywidgets.FloatSlider(0.5))
    bundles = [objects[0] for objects, options in shown if options.get("raw")]
    assert [sorted(bundle) for bundle in bundles] == [[WIDGET_VIEW, "image/png", "text/plain"]]
    assert base64.b64decode(bundles[0]["image/png"]).startswith(b"\x89PNG")
    assert drawn[0] == (2, 0.5)
    assert not plt.get_fignums()  # every picture closed once shown


def test_figure_sliders_fail_the_cell_when_the_first_picture_cannot_be_drawn(monkeypatch):
    import ipywidgets

    monkeypatch.setattr("IPython.display.display", lambda *objects, **options: None)

    def draw(index):
        raise ValueError("no such photo")

    with pytest.raises(ValueError, match="no such photo"):
        viz.figure_sliders(draw, index=ipywidgets.IntSlider(0))


# --- JupyterLab in Chromium ------------------------------------------------------------------------


def chromium_path() -> str | None:
    """$LABKIT_CHROMIUM if set, else Debian's Chromium."""
    if os.environ.get("LABKIT_CHROMIUM"):
        candidates = [os.environ["LABKIT_CHROMIUM"]]
    else:
        candidates = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((candidate for candidate in candidates if candidate and Path(candidate).is_file()), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium and Playwright, or a skip that says which is missing (a failure in CI)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[browser]')")
    path = chromium_path()
    if path is None:
        missing.append(f"Chromium ({os.environ.get('LABKIT_CHROMIUM') or 'apt-get install chromium'} not found)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() not in {"", "0", "false"}:
            pytest.fail(f"{message}; CI must run them, not skip them", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_settings(folder: Path) -> None:
    """Every cell in the page (no windowing), and no news or update toasts over the notebook."""
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},
                "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
    for name, values in settings.items():
        extension, plugin = name.split("/")
        path = folder / "@jupyterlab" / extension / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def wait_for_server(url: str, token: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer in {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels: its own process group, which it leads."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """One JupyterLab server for every notebook, on a copy of notebooks/, stopped whatever happens."""
    base = tmp_path_factory.mktemp("browser")
    root, home, jupyter = base / "lab", base / "home", base / "jupyter"
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home.mkdir()
    write_settings(jupyter / "settings")
    env = {key: value for key, value in os.environ.items()
           if key not in {"MPLBACKEND", "LABKIT_DATA", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"}}
    env.update(LABKIT_PROFILE="smoke", LABKIT_HOME=str(home), LABKIT_CACHE=str(base / "cache"),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
               JUPYTER_CONFIG_DIR=str(jupyter / "config"), JUPYTER_DATA_DIR=str(jupyter / "data"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), IPYTHONDIR=str(jupyter / "ipython"))
    port, token = free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={jupyter / 'settings'}",
             f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--ServerApp.terminals_enabled=False",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
            cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_server(url, token, process, log)
        shots = base / "screenshots"
        shots.mkdir()
        print(f"\nscreenshots: {shots}\nJupyterLab log: {log}")
        yield SimpleNamespace(url=url, token=token, root=root, shots=shots)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(chromium, lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium_browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
        finally:
            chromium_browser.close()


def open_notebook(browser, lab, path: str, workspace: str):
    """A page with only `path` open, in a workspace of its own (nothing restored from other pages)."""
    page = browser.new_page()
    page.set_default_timeout(PAGE_LOAD_SECONDS * 1000)
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{path}?token={lab.token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    page.set_default_timeout(REDRAW_SECONDS * 1000)
    return page


def cell(page, index: int):
    return page.locator(".jp-NotebookPanel .jp-Cell").nth(index)


def menu(page, title: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{title}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


def kernel_state(lab, path: str) -> str | None:
    request = urllib.request.Request(f"{lab.url}/api/sessions", headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        sessions = json.load(response)
    return next((session["kernel"]["execution_state"] for session in sessions if session["path"] == path), None)


def run_all(page, lab, path: str, timeout: float = RUN_ALL_SECONDS) -> None:
    """Clear the stored outputs, Run All Cells from the Run menu and wait until the kernel has
    really finished. The execution indicator says idle before the kernel has even started, so
    also wait until every code cell shows an execution count (none `[ ]`, none `[*]`) and the
    kernel says idle, twice in a row."""
    deadline = time.monotonic() + timeout
    while kernel_state(lab, path) != "idle":
        assert time.monotonic() < deadline, f"the kernel of {path} did not start"
        page.wait_for_timeout(500)
    menu(page, "Edit", "Clear Outputs of All Cells")
    menu(page, "Run", "Run All Cells")
    settled = 0
    while settled < 2:
        assert time.monotonic() < deadline, f"Run All did not finish in {timeout} s; prompts: {prompts(page)}"
        page.wait_for_timeout(500)
        done = all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts(page))
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() == 1
        settled = settled + 1 if done and idle and kernel_state(lab, path) == "idle" else 0


def prompts(page) -> list[str]:
    return [text.strip() for text in page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").all_inner_texts()]


@pytest.fixture(scope="module")
def executed(browser, lab):
    """Pages of notebooks after Run All, run once each and in RUN_ORDER whatever test asks first."""
    pages = {}

    def page_of(key: str):
        for earlier in RUN_ORDER[:RUN_ORDER.index(key) + 1]:
            if earlier not in pages:
                path = f"notebooks/{NOTEBOOKS[earlier]}"
                page = open_notebook(browser, lab, path, f"run-{earlier}")
                started = time.monotonic()
                run_all(page, lab, path)
                print(f"\n{NOTEBOOKS[earlier]}: Run All took {time.monotonic() - started:.0f} s")
                page.screenshot(path=lab.shots / f"{earlier}-after-run-all.png")
                pages[earlier] = page
        return pages[key]

    return page_of


@pytest.mark.parametrize("key", WIDGET_NOTEBOOKS)
def test_slider_cells_show_a_picture_when_the_notebook_is_first_opened(browser, lab, key):
    name = NOTEBOOKS[key]
    fresh = lab.root / "first-open" / name  # never run, so never trusted
    fresh.parent.mkdir(exist_ok=True)
    shutil.copy(REPO / "notebooks" / name, fresh)
    page = open_notebook(browser, lab, f"first-open/{name}", f"first-open-{key}")
    try:
        widget_cell = cell(page, widget_cell_index(stored(name)))
        widget_cell.scroll_into_view_if_needed()
        widget_cell.locator(".jp-OutputArea-output img").wait_for()
        widget_cell.screenshot(path=lab.shots / f"{key}-first-open-slider-cell.png")
        assert "interactive(children=" not in widget_cell.inner_text()
    finally:
        page.close()


@pytest.mark.parametrize("key", RUN_ORDER)
def test_run_all_cells_shows_no_error(executed, key):
    page = executed(key)
    errors = [text for text in page.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
              if re.search(r"Traceback|Error|Exception", text)]
    assert not errors, errors[0][-2000:]
    assert page.get_by_text("Error displaying widget").count() == 0
    assert page.get_by_text("Loading widget...").count() == 0


@pytest.mark.parametrize("key", RUN_ORDER)
def test_run_all_prints_no_path_above_a_figure(executed, key):
    outputs_with_figures = executed(key).locator(".jp-NotebookPanel .jp-Cell").evaluate_all(
        "cells => cells.filter(cell => cell.querySelector('.jp-OutputArea-output img'))"
        "              .map(cell => cell.querySelector('.jp-OutputArea').innerText)")
    assert outputs_with_figures
    assert not [text for text in outputs_with_figures if "PosixPath(" in text]


def slider_parts(page, key: str, description: str):
    widget_cell = cell(page, widget_cell_index(stored(NOTEBOOKS[key])))
    slider = widget_cell.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(f"^{description}$")))
    slider.scroll_into_view_if_needed()
    return widget_cell, slider.locator(".noUi-handle"), slider.locator(".widget-readout")


PICTURE = ".widget-interact .jp-OutputArea-output img"


def wait_for_picture(widget_cell, selector: str, what: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        widget_cell.locator(selector).wait_for()
    except PlaywrightTimeoutError:
        shown = widget_cell.locator(".widget-interact").inner_text()
        raise AssertionError(f"{what} within {REDRAW_SECONDS} s; the slider cell shows:\n{shown[-2000:]}") from None


def redrawn(page, widget_cell, move, shot: Path) -> tuple[str, str]:
    """The picture's PNG before and after `move`, once a new picture has replaced the old one."""
    wait_for_picture(widget_cell, PICTURE, "no picture under the sliders")
    picture = widget_cell.locator(PICTURE)
    before = picture.get_attribute("src")
    picture.evaluate("image => { image.dataset.seenBefore = 'yes'; }")
    move()
    try:
        wait_for_picture(widget_cell, f"{PICTURE}:not([data-seen-before])", "the slider moved but no new picture came")
        page.wait_for_timeout(1500)  # a drag sends several values; let the last picture arrive
        return before, widget_cell.locator(PICTURE).get_attribute("src")
    finally:
        page.screenshot(path=shot)


@pytest.mark.parametrize(("key", "description"), SLIDERS)
def test_arrow_keys_on_a_slider_redraw_the_picture(executed, lab, key, description):
    page = executed(key)
    widget_cell, handle, readout = slider_parts(page, key, description)
    for arrow in ("ArrowRight", "ArrowLeft"):
        value = readout.inner_text()
        before, after = redrawn(page, widget_cell, lambda: (handle.focus(), handle.press(arrow)),
                                lab.shots / f"{key}-{description}-{arrow}.png")
        assert readout.inner_text() != value, f"{arrow} did not move the {description} slider"
        assert after != before, f"{arrow} moved the {description} slider to {readout.inner_text()}, the picture stayed"


@pytest.mark.parametrize(("key", "description"), SLIDERS)
def test_dragging_a_slider_redraws_the_picture(executed, lab, key, description):
    page = executed(key)
    widget_cell, handle, readout = slider_parts(page, key, description)
    value = readout.inner_text()

    def drag():
        box = handle.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y, steps=6)
        page.mouse.up()

    before, after = redrawn(page, widget_cell, drag, lab.shots / f"{key}-{description}-drag.png")
    assert readout.inner_text() != value, f"dragging did not move the {description} slider"
    assert after != before, f"dragging moved the {description} slider to {readout.inner_text()}, the picture stayed"
