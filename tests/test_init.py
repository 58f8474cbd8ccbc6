"""init=SETUP (``--init``): SETUP runs once in each worker before its first
item, the mapped function sees the globals SETUP assigns there, and the
notebook's namespace is left alone."""

import os
import sys
import threading
import types
import warnings

import pytest

from shown import traceback_text

from parmagic import GlobalMutationWarning, ParmagicInputError, pmap, run, start

try:  # a local cluster of 2 worker processes, as test_cluster.py makes it
    from test_cluster import dask_cluster  # noqa: F401 - a fixture
except pytest.skip.Exception:
    @pytest.fixture
    def dask_cluster():
        pytest.skip("needs dask.distributed")

NOTEBOOK_CELL = '''
import os, threading

def worker_id():
    return f"{{os.getpid()}}-{{threading.get_ident()}}"

def setup_model():
    global MODEL, SEEN
    with open({log!r}, "a") as log:  # one line per SETUP call
        log.write(worker_id() + "\\n")
    print("setting up", worker_id())
    MODEL = {{"w": 3}}
    SEEN = []

def scale(x):  # a helper reading what SETUP assigned
    return MODEL["w"] * x

def predict(x):
    SEEN.append(x)  # SETUP's state is the worker's own: no warning
    return scale(x), worker_id()

class ModelMissing(Exception):
    pass

def broken_setup():
    raise ModelMissing("no weights file")
'''


@pytest.fixture
def notebook(monkeypatch, tmp_path):
    """NOTEBOOK_CELL run as a notebook runs it, in a ``__main__`` module:
    its functions travel by value, as notebook functions do."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    log = tmp_path / "setup.log"
    exec(NOTEBOOK_CELL.format(log=str(log)), vars(main))  # noqa: S102 - the test's own code
    main.setup_calls = lambda: log.read_text().split() if log.exists() else []
    return main


def mapped_with_setup(notebook, backend, capsys, **options):
    """Map ``predict`` over 40 items with SETUP; check what the user sees
    and return (SETUP calls, workers that ran items)."""
    earlier = len(notebook.setup_calls())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = pmap(notebook.predict, range(40), n_jobs=2, backend=backend,
                       init=notebook.setup_model, progress=False, **options)
    assert [value for value, _ in results] == [3 * x for x in range(40)]
    assert not [w for w in caught if issubclass(w.category, GlobalMutationWarning)]
    assert "MODEL" not in vars(notebook) and "SEEN" not in vars(notebook)
    calls = notebook.setup_calls()[earlier:]
    assert len(calls) == len(set(calls)), f"SETUP ran twice in a worker: {calls}"
    printed = capsys.readouterr().out
    assert sorted(printed.split("\n")[:-1]) == sorted(f"setting up {c}" for c in calls)
    return calls, {worker for _, worker in results}


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_setup_runs_once_per_worker_process(notebook, backend, capsys):
    # one item per chunk: 40 chunks, and each worker's later chunks see the
    # globals its SETUP assigned for the first
    calls, workers = mapped_with_setup(notebook, backend, capsys, batch_size=1)
    assert set(calls) == workers and 1 <= len(calls) <= 2
    assert all(not c.startswith(f"{os.getpid()}-") for c in calls)  # not in the notebook


def test_setup_runs_once_per_thread(notebook, capsys):
    calls, workers = mapped_with_setup(notebook, "threading", capsys)
    assert set(calls) == workers and 1 <= len(calls) <= 2
    assert all(c.startswith(f"{os.getpid()}-") for c in calls)


def test_setup_runs_once_on_the_sequential_backend(notebook, capsys):
    calls, workers = mapped_with_setup(notebook, "sequential", capsys)
    assert calls == [f"{os.getpid()}-{threading.get_ident()}"] == sorted(workers)


def test_setup_runs_again_in_each_run(notebook, capsys):
    first, _ = mapped_with_setup(notebook, "loky", capsys)
    again, workers = mapped_with_setup(notebook, "loky", capsys)
    assert first and set(again) == workers  # the warm workers set up anew


def test_background_runs_take_setup_too(notebook):
    handle = start(notebook.predict, range(4), n_jobs=2, init=notebook.setup_model)
    assert [value for value, _ in handle.result()] == [0, 3, 6, 9]
    assert "MODEL" not in vars(notebook)


def test_changes_to_notebook_globals_are_still_reported(notebook):
    exec("TOTALS = []\ndef record(x):\n    TOTALS.append(MODEL['w'] * x)\n", vars(notebook))
    with pytest.warns(GlobalMutationWarning, match="changes the global TOTALS"):
        pmap(notebook.record, range(4), n_jobs=2, init=notebook.setup_model, progress=False)
    assert notebook.TOTALS == []


@pytest.mark.parametrize("backend", ["loky", "threading"])
@pytest.mark.parametrize("on_error", ["raise", "collect"])
def test_a_failing_setup_names_itself_and_the_next_run_works(notebook, backend, on_error):
    with pytest.raises(notebook.ModelMissing, match="no weights file") as caught:
        pmap(notebook.predict, range(40), n_jobs=2, backend=backend,
             init=notebook.broken_setup, on_error=on_error, progress=False)
    assert caught.value.__notes__ == [
        "parmagic: SETUP broken_setup failed in a worker; 40 items were not run"]
    worker_part = traceback_text(caught.value).partition("in broken_setup")[2]
    assert worker_part and "parmagic/" not in worker_part  # SETUP's lines, not parmagic's
    results = pmap(notebook.predict, range(4), n_jobs=2, backend=backend,
                   init=notebook.setup_model, progress=False)
    assert [value for value, _ in results] == [0, 3, 6, 9]


def test_setup_must_be_callable(notebook):
    with pytest.raises(ParmagicInputError, match="SETUP .init. must be a function .*, not int 5"):
        pmap(notebook.predict, range(4), init=5)


def test_cached_results_are_keyed_by_setup_too(notebook, tmp_path):
    exec("def setup_double():\n    global MODEL, SEEN\n    MODEL, SEEN = {'w': 2}, []\n",
         vars(notebook))
    options = dict(backend="sequential", cache=tmp_path / "cache", progress=False)
    tripled = run(notebook.predict, [range(4)], init=notebook.setup_model, **options)
    doubled = run(notebook.predict, [range(4)], init=notebook.setup_double, **options)
    assert [value for value, _ in doubled.results] == [0, 2, 4, 6]
    assert (tripled.n_cached, doubled.n_cached) == (0, 0)
    again = run(notebook.predict, [range(4)], init=notebook.setup_double, **options)
    assert again.n_cached == 4


def test_setup_on_dask_runs_once_per_worker_process_and_run(notebook, capsys, dask_cluster):
    first, workers = mapped_with_setup(notebook, "dask", capsys, batch_size=1)
    assert set(first) == workers and 1 <= len(first) <= 2
    again, workers = mapped_with_setup(notebook, "dask", capsys, batch_size=1)
    assert set(again) == workers  # set up anew for this run
