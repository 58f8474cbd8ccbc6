"""What a notebook user sees, in a real browser: JupyterLab serves a notebook
like the quickstart and headless Chromium runs it cell by cell (as
Shift+Enter would); each cell's check reads what the page shows.

Adding a case is adding a ``Cell``: its source and a check that waits for
what the cell should show and asserts on it (see ``browser.Notebook``).

    PARMAGIC_SCREENSHOTS=docs/screenshots pytest tests/test_browser.py

(``make screenshots``) also saves PNGs of some cells into that folder; a run
without the variable writes nothing outside its temporary folders.
"""

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat
import pytest
from browser import Notebook, chromium, jupyter_lab, missing_browser
from shown import assert_no_machinery, in_order

SCREENSHOTS = os.environ.get("PARMAGIC_SCREENSHOTS")


@dataclass
class Cell:
    source: str
    check: Callable[[Notebook, int], None]  # check(notebook, index of this cell)


def results(outputs):
    """The texts shown as Out[n]."""
    return [output["text"].strip() for output in outputs if output["result"]]


def shows_nothing(notebook, index):
    assert notebook.outputs(index) == []


def shows_result(text):
    def check(notebook, index):
        notebook.shown(index, lambda outputs: results(outputs) == [text], f"Out: {text}")
    return check


def shows_the_run_record(notebook, index):
    (html,) = [output for output in notebook.outputs(index) if output["mime"] == "text/html"]
    assert html["text"].startswith("parmap run of slow"), html
    assert "done" in html["text"].splitlines()[0], html
    rows = {row.find_element("css selector", "th").text: row.find_element("css selector", "td").text
            for row in notebook.cell(index).find_elements("css selector", ".jp-OutputArea table tr")}
    assert re.search(r"\b12\b.* finished, 0 failed", rows["items"]), rows
    assert rows["where"] == "loky backend, n_jobs=2", rows
    assert re.fullmatch(r"wall [\d.]+ s, worker CPU [\d.]+ s", rows["time"]), rows
    notebook.screenshot(index, "run_record.png")


def items_done(bar):
    """The N of "N/12" in a progress bar's text; 0 until it shows a count."""
    count = re.search(r"(\d+)/12\b", bar["text"])
    return int(count.group(1)) if count else 0


def progress_bars(outputs):
    return [output for output in outputs if output["progress"]]


def shows_progress_while_running(notebook, index):
    def counting_bar_while_running():
        state = notebook.state(index)  # prompt and outputs read at one instant
        assert state["prompt"] == "[*]:", f"the run ended before a progress bar was seen: {state}"
        bars = progress_bars(state["outputs"])
        # a new bar is drawn empty, then at 0, before it shows the count
        return bars and items_done(bars[0]) > 0 and bars[0]

    bar = notebook.wait(counting_bar_while_running, "a progress bar while the run goes on")
    notebook.screenshot(index, "progress_bar.png")
    assert bar["text"].startswith("slow:") and items_done(bar) < 12, bar
    outputs = notebook.shown(
        index, lambda outputs: [items_done(bar) for bar in progress_bars(outputs)] == [12],
        "the bar to stay, full")
    assert results(outputs) == [str(list(range(12)))], outputs


def warns_about_the_global(notebook, index):
    outputs = notebook.shown(index, lambda outputs: results(outputs) == ["[None, None, None, None]"],
                             "Out: [None, None, None, None]")
    warnings = [output for output in outputs if "GlobalMutationWarning" in output["text"]]
    assert len(warnings) == 1, outputs
    text = warnings[0]["text"]
    assert "update_array" in text and re.search(r"\bglobal\W+A\b", text), text
    assert "lost" in text, text
    notebook.screenshot(index, "mutation_warning.png")


def error_text(notebook, index):
    (error,) = [output for output in notebook.outputs(index)
                if output["mime"] == "application/vnd.jupyter.stderr" and "Error" in output["text"]]
    assert_no_machinery(error["text"])
    return error["text"]


def fails_like_a_serial_loop(notebook, index):
    text = error_text(notebook, index)
    in_order(text, "ZeroDivisionError", "Traceback (most recent call last)",
             "----> 5 get_ipython().run_line_magic('pmap', '-n 2 inv [1, 2, 0, 4]')",
             "in inv(x)", "----> 2     return 1 / x",
             "ZeroDivisionError: division by zero",
             "parmagic: item 2 (0) failed; 3 of 4 results had finished")
    assert text.count("---->") == 2, text  # the cell's line and the function's
    notebook.screenshot(index, "failed_item.png")


def collects_failures_without_internals(notebook, index):
    text = error_text(notebook, index)
    in_order(text, "Exception Group Traceback", "run_line_magic('pmap'",
             "ExceptionGroup: 2 of 4 items failed", "return 1 / x",
             "parmagic: item 1 (0) failed", "return 1 / x", "parmagic: item 3 (0) failed")


def background_cell_shows_the_run_live(notebook, index):
    running = notebook.shown(
        index, lambda outputs: any("running in the background" in output["text"]
                                   for output in outputs),
        "the run shown as running", seconds=30)
    views = [output for output in running if "background" in output["text"]]
    assert len(views) == 1, running  # `run` on the last line adds no second view


def meanwhile_a_cell_shows_only_its_own_output(notebook, index):
    # the run's items wait for the file this cell creates: all they print
    # comes after this cell ran, and must go to the cell that started them
    outputs = notebook.shown(index, lambda outputs: results(outputs) == ["'meanwhile'"],
                             "Out: 'meanwhile'")
    assert [output["text"].strip() for output in outputs] == ["'meanwhile'"], outputs


def the_background_cell_ends_done_with_its_output(notebook, index):
    notebook.shown(index, lambda outputs: results(outputs) == ["True"], "Out: True", seconds=60)
    started = index - 2
    ended = notebook.shown(
        started, lambda outputs: any("background run of chatty done: 6 of 6 finished"
                                     in output["text"] for output in outputs),
        "the starting cell's view updated to done", seconds=30)
    printed = "".join(output["text"] for output in ended
                      if output["mime"] == "application/vnd.jupyter.stdout")
    assert printed.split() == [word for x in range(6) for word in ("item", str(x))], ended
    notebook.screenshot(started, "background_run.png")


def prints_while_the_item_runs(notebook, index):
    def heard_while_running():
        state = notebook.state(index)
        assert state["prompt"] == "[*]:", f"the run ended before its output was seen: {state}"
        return any("working on 0" in output["text"] for output in state["outputs"])

    notebook.wait(heard_while_running, "the first item's print while it runs")
    (notebook.root / "release").touch()  # the items end once it was seen
    outputs = notebook.shown(index, lambda outputs: results(outputs) == ["[True, True]"],
                             "Out: [True, True]", seconds=60)
    printed = "".join(output["text"] for output in outputs
                      if output["mime"] == "application/vnd.jupyter.stdout")
    assert printed.split("\n") == ["working on 0", "finished 0", "working on 1",
                                   "finished 1", ""], outputs


CELLS = [
    Cell("%load_ext parmagic", shows_nothing),
    Cell("def square(x):\n"
         "    return x * x\n"
         "\n"
         "%pmap -n 2 square range(10)", shows_result("[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]")),
    Cell("import time\n"
         "\n"
         "def slow(x):\n"
         "    time.sleep(0.5)\n"
         "    return x\n"
         "\n"
         "%pmap -n 2 slow range(12)", shows_progress_while_running),
    Cell("_parmap", shows_the_run_record),
    Cell("A = [0, 0, 0, 0]\n"
         "\n"
         "def update_array(i):\n"
         "    global A\n"
         "    A[i] = i\n"
         "\n"
         "%pmap -n 2 update_array range(4)", warns_about_the_global),
    Cell("A", shows_result("[0, 0, 0, 0]")),  # the warning said so
    Cell("def inv(x):\n"
         "    return 1 / x\n"
         "\n"
         "\n"
         "%pmap -n 2 inv [1, 2, 0, 4]", fails_like_a_serial_loop),
    Cell("%pmap -n 2 --on-error collect inv [1, 0, 4, 0]", collects_failures_without_internals),
    Cell("import os\n"
         "\n"
         "def chatty(x):\n"
         "    while not os.path.exists('go'):\n"
         "        time.sleep(0.01)\n"
         "    time.sleep(0.2)\n"
         "    print('item', x)\n"
         "    return x\n"
         "\n"
         "run = %pmap --bg -n 2 chatty range(6)\n"
         "run", background_cell_shows_the_run_live),
    Cell("open('go', 'w').close()\n"
         "'meanwhile'", meanwhile_a_cell_shows_only_its_own_output),
    Cell("run.wait(60)", the_background_cell_ends_done_with_its_output),
    Cell("def long_item(x):\n"
         "    print('working on', x)\n"
         "    deadline = time.monotonic() + 60\n"
         "    while not os.path.exists('release') and time.monotonic() < deadline:\n"
         "        time.sleep(0.01)\n"
         "    print('finished', x)\n"
         "    return os.path.exists('release')\n"
         "\n"
         "%pmap -n 2 long_item range(2)", prints_while_the_item_runs),
]


def write_notebook(path, cells):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(cell.source) for cell in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(notebook, path)


@pytest.fixture
def notebook():
    """``CELLS`` open in JupyterLab in Chromium, nothing run yet. Server,
    kernel, browser and temporary folders are gone afterwards, also when
    the test fails (browser.py checks their processes and /dev/shm)."""
    reason = missing_browser()
    if reason is not None:
        if SCREENSHOTS:
            pytest.fail(f"screenshots were asked for, but {reason}")
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="parmagic-browser-") as temp:
        root, home = Path(temp, "root"), Path(temp, "home")
        root.mkdir()
        write_notebook(root / "browser.ipynb", CELLS)
        with jupyter_lab(root, home) as lab, chromium() as driver:
            notebook = Notebook.open(driver, lab, "browser.ipynb", screenshots=SCREENSHOTS)
            notebook.root = root  # the kernel's working folder
            yield notebook


@pytest.mark.timeout(180)
def test_notebook_cells_show_what_they_promise(notebook):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    for index, cell in enumerate(CELLS):
        notebook.run(index)
        try:
            cell.check(notebook, index)
        except AssertionError as error:
            error.add_note(f"in cell {index}:\n{cell.source}")
            raise
