"""Every notebook in demos/ runs in a real kernel and shows what it promises."""

import sys
from pathlib import Path

import pytest
from platforms import needs_posix

DEMOS = Path(__file__).resolve().parent.parent / "demos"
sys.path.insert(0, str(DEMOS))
import run as demo_runner  # noqa: E402


def is_error(output):
    """An error as the user sees it: a traceback, or a UsageError line."""
    if output.output_type == "error":
        return True
    return output.output_type == "stream" and "Error: " in output.text


def shown(cell):
    return "".join(demo_runner.output_text(output) for output in cell.get("outputs", []))


def cell_showing(notebook, source_start):
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return shown(cell)
    raise AssertionError(f"no cell starts with {source_start!r}")


@pytest.mark.parametrize("path", sorted(DEMOS.glob("*.ipynb")), ids=lambda p: p.name)
def test_demo_runs_without_unexpected_errors(path):
    notebook = demo_runner.execute(path, timeout=120)
    for cell in notebook.cells:
        errors = [o for o in cell.get("outputs", []) if is_error(o)]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(errors) == expected, (cell.source, errors)


def test_quickstart_shows_results_record_and_usage_error():
    notebook = demo_runner.execute(DEMOS / "quickstart.ipynb", timeout=120)
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in cell_showing(notebook, "def square")
    assert "[0, 1, 8, 27, 64]" in cell_showing(notebook, "%pmap pow")
    assert "[0, 1, 4, 9, 16, 25]" in cell_showing(notebook, "%%parmap")
    record = cell_showing(notebook, "_parmap")
    assert "slow_square: done" in record and "n_jobs=2" in record
    assert "UsageError: ITERABLE '42' is not iterable" in cell_showing(notebook, "%pmap square 42")
    seed = " ".join(cell_showing(notebook, "A = [0, 0, 0, 0]").split())  # warnings wrap
    assert "[None, None, None, None]" in seed
    assert seed.count("GlobalMutationWarning") == 1
    assert "update_array changes the global A (line 5: A[i] = i)" in seed
    assert "the notebook's A is unchanged" in seed
    (show_a,) = [shown(c) for c in notebook.cells if c.cell_type == "code" and c.source == "A"]
    assert show_a == "[0, 0, 0, 0]\n"
    assert "[0, 1, 2, 3]" in cell_showing(notebook, "def update_array2")
    timing = cell_showing(notebook, "def busy")
    assert "parmap timing of busy: 8 items on 2 loky workers" in timing
    assert "speedup" in timing and "dispatch overhead" in timing
    (timeline,) = [c for c in notebook.cells if c.get("source") == "_parmap.timeline();"]
    assert any("image/png" in output.get("data", {}) for output in timeline.outputs)
    assert "they mostly wait" in cell_showing(notebook, "%pmap -t -n 2 slow_square")


@needs_posix("a segfault that ends the worker (Windows' ctypes raises OSError instead)")
def test_when_things_go_wrong_shows_each_failure_clearly():
    notebook = demo_runner.execute(DEMOS / "when_things_go_wrong.ipynb", timeout=120)
    assert "item 0 done\nitem 1 done\nitem 2 done\nitem 3 done\n" in cell_showing(
        notebook, "def chatty")
    assert "ZeroDivisionError" in cell_showing(notebook, "%pmap -n 2 inv")
    (record,) = [shown(c) for c in notebook.cells if c.get("source") == "_parmap"]
    assert "parmap run of inv: failed" in record and "item 2 (0)" in record
    assert "[1.0, 0.5, <not computed>, 0.25]" in cell_showing(notebook, "_parmap.results")
    assert "4 of 7 items failed" in cell_showing(notebook, "%pmap -n 2 --on-error collect")
    assert "ItemTimeoutError" in cell_showing(notebook, "%pmap -n 2 --timeout 1")
    assert "WorkerCrashError" in cell_showing(notebook, "def crash")
    assert "[1, 2, 3]" in cell_showing(notebook, "%pmap -n 2 abs")
    assert "the global 'lock'" in cell_showing(notebook, "lock = threading.Lock()")
    assert "[1, 2]" in cell_showing(notebook, "%pmap -n 2 -b threading locked")
    progress = cell_showing(notebook, "%pmap -n 2 slow [0.3]*8")
    assert "slow:" in progress and "/8 [" in progress  # the bar, as text
    assert "[0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]" in progress


def test_dask_demo_runs_on_a_local_cluster():
    notebook = demo_runner.execute(DEMOS / "dask.ipynb", timeout=120)
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in cell_showing(notebook, "def square")
    assert "item 0 ran on a worker\nitem 1 ran on a worker\nitem 2 ran on a worker\n" in (
        cell_showing(notebook, "def where"))
    assert "ZeroDivisionError" in cell_showing(notebook, "def inv")
    assert "[0, 1, 4, 9, 16]" in cell_showing(notebook, "%pmap --scheduler")
    (record,) = [shown(c) for c in notebook.cells if c.get("source") == "_parmap"]
    assert "dask backend, n_jobs=2" in record


def test_long_runs_demo_shows_the_cache_and_a_background_run():
    notebook = demo_runner.execute(DEMOS / "long_runs.ipynb", timeout=120)
    assert "12 finished (8 from the cache)" in cell_showing(notebook, "more = %pmap")
    assert "[1, 2, 5, 10] 0 from the cache" in cell_showing(notebook, "def slow_square")
    # the cell that started the run shows it live: by now, as it ended
    assert "background run of slow_square done: 12 of 12 finished" in cell_showing(
        notebook, "run = %pmap --bg -n 2 -o")
    assert "meanwhile, the notebook answers: 42" in cell_showing(notebook, "print('meanwhile")
    ended = cell_showing(notebook, "run.wait()")
    assert "[1, 2, 5, 10, 17, 26, 37, 50, 65, 82, 101, 122]" in ended
    assert "background run of slow_square done: 12 of 12 finished" in ended
    cancelled = cell_showing(notebook, "run = %pmap --bg -n 2 slow_square range(100)")
    assert cancelled.startswith("background run of slow_square cancelled: ")  # its live view
    assert "\ncancelled " in cancelled  # what the cell printed
    loaded = cell_showing(notebook, "import os\n\ndef load_model")
    assert loaded == "[0, 3, 6, 9, 12] 2 workers loaded it; False\n"
    assert cell_showing(notebook, "first_try = ") == "[0, 10, 20, 30, 40, 50] {0: 2, 3: 2}\n"
