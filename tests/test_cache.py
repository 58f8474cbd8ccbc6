"""--cache: results kept on disk as they arrive, reruns compute only what is
missing, and anything that changes the function or damages an entry means
computing again."""

import os
import threading
import time

import numpy as np
import pytest

from parmagic import NotPicklableError, ParmagicInputError, run
from parmagic.engine.cache import ResultCache


def make_counted(log_path, code="x * 2", extra_globals=None):
    """A notebook-like function that logs each computed item to a file
    (workers append, so the test can count what was recomputed)."""
    namespace = {"os": os, "time": time, "LOG": str(log_path), **(extra_globals or {})}
    exec(
        "def work(x):\n"
        "    with open(LOG, 'a') as log:\n"
        "        log.write(f'{x}\\n')\n"
        f"    return {code}\n",
        namespace,
    )
    return namespace["work"]


def computed(log_path):
    if not log_path.exists():
        return []
    return sorted(int(line) for line in log_path.read_text().split())


def cached_run(func, items, cache, **options):
    records = []
    try:
        run(func, [items], n_jobs=2, cache=cache, progress=False,
            on_start=records.append, **options)
    except Exception as exc:  # noqa: BLE001 - the test looks at the record
        return records[0], exc
    return records[0], None


def test_a_rerun_takes_finished_items_from_the_cache(tmp_path):
    log = tmp_path / "log"
    work = make_counted(log)
    record, _ = cached_run(work, range(6), tmp_path / "cache")
    assert record.results == [0, 2, 4, 6, 8, 10] and record.n_cached == 0
    record, _ = cached_run(work, range(9), tmp_path / "cache")
    assert record.results == [x * 2 for x in range(9)]
    assert record.n_cached == 6
    assert computed(log) == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # 6, 7, 8 once, the rest once
    assert "6 from the cache" in repr(record)


FAILS_ONCE = """
def work(x):
    if x in FAILING and os.path.exists(MARKER):
        raise ValueError(f"item {x} fails while the marker is there")
    with open(LOG, "a") as log:
        log.write(f"{x}\\n")
    time.sleep(0.02)
    return x * 2
"""


def fails_once(tmp_path, failing):
    """A function whose ``failing`` items raise until the test removes the
    marker file; the function itself, and so its cache key, stays the same."""
    marker = tmp_path / "marker"
    marker.touch()
    namespace = {"os": os, "time": time, "LOG": str(tmp_path / "log"),
                 "MARKER": str(marker), "FAILING": failing}
    exec(FAILS_ONCE, namespace)
    return namespace["work"], marker


def test_a_rerun_after_failures_computes_exactly_the_failed_items(tmp_path):
    work, marker = fails_once(tmp_path, failing={2, 5})
    record, _ = cached_run(work, range(8), tmp_path / "cache", on_error="collect")
    assert sorted(record.errors) == [2, 5] and record.n_finished == 6
    marker.unlink()
    (tmp_path / "log").unlink()
    record, error = cached_run(work, range(8), tmp_path / "cache", on_error="collect")
    assert error is None and record.results == [x * 2 for x in range(8)]
    assert record.n_cached == 6 and computed(tmp_path / "log") == [2, 5]


def test_a_rerun_after_a_stopped_run_computes_exactly_what_was_missing(tmp_path):
    work, marker = fails_once(tmp_path, failing={6})
    record, error = cached_run(work, range(20), tmp_path / "cache", batch_size=1)
    assert isinstance(error, ValueError)
    finished = [i for i, value in enumerate(record.results) if value == i * 2]
    assert 0 < len(finished) < 20  # stopped part way
    marker.unlink()
    (tmp_path / "log").unlink()
    record, error = cached_run(work, range(20), tmp_path / "cache", batch_size=1)
    assert error is None and record.results == [x * 2 for x in range(20)]
    assert record.n_cached == len(finished)
    assert computed(tmp_path / "log") == sorted(set(range(20)) - set(finished))


def test_failed_items_are_not_cached(tmp_path):
    log = tmp_path / "log"
    work = make_counted(log, code="1 / x")
    cached_run(work, [1, 0, 2], tmp_path / "cache", on_error="collect")
    log.unlink()
    record, error = cached_run(work, [1, 0, 2], tmp_path / "cache", on_error="collect")
    assert record.n_cached == 2 and computed(log) == [0]  # only the failure again


def test_an_item_that_cannot_be_hashed_is_computed_each_time_and_the_rest_cached(tmp_path):
    lock = threading.Lock()  # what --cache cannot hash, and threads take as it is
    for n_cached in [0, 2]:
        record, error = cached_run(lambda x: type(x).__name__, [1, lock, 2], tmp_path,
                                   backend="threading")
        assert error is None and record.results == ["int", "lock", "int"]
        assert record.n_cached == n_cached


def test_an_item_that_cannot_be_hashed_on_processes_is_the_usual_clear_error(tmp_path):
    record, error = cached_run(abs, [1, threading.Lock()], tmp_path)
    assert isinstance(error, NotPicklableError)
    assert str(error).startswith("item 1 (<unlocked _thread.lock object")


def test_changing_code_globals_or_closures_invalidates(tmp_path):
    log = tmp_path / "log"
    cache = tmp_path / "cache"
    cached_run(make_counted(log, "x + OFFSET", {"OFFSET": 1}), range(3), cache)
    record, _ = cached_run(make_counted(log, "x + OFFSET", {"OFFSET": 1}), range(3), cache)
    assert record.n_cached == 3  # the same code and globals: hits
    record, _ = cached_run(make_counted(log, "x + OFFSET", {"OFFSET": 2}), range(3), cache)
    assert record.n_cached == 0 and record.results == [2, 3, 4]
    record, _ = cached_run(make_counted(log, "x - OFFSET", {"OFFSET": 2}), range(3), cache)
    assert record.n_cached == 0 and record.results == [-2, -1, 0]

    def closure(step):
        return lambda x: x * step

    cached_run(closure(2), range(3), cache)
    record, _ = cached_run(closure(3), range(3), cache)
    assert record.n_cached == 0 and record.results == [0, 3, 6]


NOTEBOOK = """
OFFSET = {offset}
class Scaler:
    FACTOR = {factor}
    def scale(self, x):
        return x * self.FACTOR{method}
def helper(x):
    return x{helper}
def make(step):
    def work(x, bias={bias}):
        with open(LOG, "a") as log:
            log.write(f"{{x}}\\n")
        return Scaler().scale(helper(x)) + OFFSET + bias + step{work}
    return work
work = make({step})
"""
UNEDITED = dict(offset=0, factor=2, method="", helper="", bias=0, step=0, work="")


def notebook_work(log_path, **edits):
    """``work`` as a notebook defines it, re-run from its source each time
    (new function and class objects, as when a cell is run again)."""
    namespace = {"__name__": "__main__", "LOG": str(log_path)}
    exec(NOTEBOOK.format(**{**UNEDITED, **edits}), namespace)
    return namespace["work"]


@pytest.mark.parametrize("edit", [
    dict(work=" + 100"),  # the function's code
    dict(helper=" + 1"),  # a notebook helper's code
    dict(method=" - 1"),  # a method of a class the function uses
    dict(factor=3),  # a class attribute
    dict(bias=10),  # a default
    dict(step=5),  # a closure variable
    dict(offset=7),  # a global value read
], ids=lambda edit: next(iter(edit)))
def test_every_kind_of_edit_is_computed_again_and_no_edit_is_not(tmp_path, edit):
    log, cache = tmp_path / "log", tmp_path / "cache"
    record, _ = cached_run(notebook_work(log), range(4), cache)
    assert record.results == [0, 2, 4, 6] and record.n_cached == 0
    log.unlink()
    record, _ = cached_run(notebook_work(log), range(4), cache)  # the cell run again
    assert record.n_cached == 4 and computed(log) == []
    edited = notebook_work(log, **edit)
    expected = [edited(x) for x in range(4)]
    assert expected != [0, 2, 4, 6]
    log.unlink()
    record, _ = cached_run(edited, range(4), cache)
    assert record.results == expected
    assert record.n_cached == 0 and computed(log) == [0, 1, 2, 3]


def test_damaged_entries_are_recomputed_never_returned(tmp_path):
    log = tmp_path / "log"
    work = make_counted(log)
    cache = tmp_path / "cache"
    cached_run(work, range(4), cache)
    (folder,) = cache.iterdir()
    entries = sorted(folder.iterdir())
    entries[0].write_bytes(entries[0].read_bytes()[:-3])  # truncated
    data = bytearray(entries[1].read_bytes())
    data[-1] ^= 0xFF  # one flipped bit
    entries[1].write_bytes(bytes(data))
    entries[2].write_bytes(b"")  # empty
    log.unlink()
    record, _ = cached_run(work, range(4), cache)
    assert record.results == [0, 2, 4, 6]
    assert record.n_cached == 1 and len(computed(log)) == 3


def test_numpy_items_are_keyed_by_content(tmp_path):
    cache = tmp_path / "cache"
    arrays = [np.arange(10.0) * i for i in range(3)]
    cached_run(np.sum, arrays, cache)
    record, _ = cached_run(np.sum, [a.copy() for a in arrays], cache)
    assert record.n_cached == 3
    record, _ = cached_run(np.sum, [a + 1 for a in arrays], cache)
    assert record.n_cached == 0


def test_a_cache_path_that_is_a_file_is_an_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ParmagicInputError, match="cannot use .* as a cache folder"):
        run(abs, [[1]], cache=blocker / "cache")


def test_results_that_cannot_be_pickled_are_simply_not_cached(tmp_path):
    import threading

    from parmagic.engine.cache import _MISSING

    cache = ResultCache(tmp_path, abs)
    assert cache.lookup(0, (1,)) is _MISSING  # a miss remembers the key
    cache.store(0, threading.Lock())
    assert list(cache.folder.iterdir()) == []
    cache.lookup(1, (2,))
    cache.store(1, 2)
    assert cache.lookup(1, (2,)) == 2


def test_a_fully_cached_run_starts_no_workers(tmp_path):
    from processes import stop_workers_and_wait, worker_processes

    cached_run(abs, [-1, -2, -3], tmp_path / "cache")
    assert not stop_workers_and_wait()
    record, _ = cached_run(abs, [-1, -2, -3], tmp_path / "cache")
    assert record.results == [1, 2, 3] and record.n_cached == 3
    assert worker_processes() == []


@pytest.mark.parametrize("reached", ["module global", "imported function", "module's import"])
def test_an_edit_to_a_users_module_the_function_reaches_is_a_new_key(tmp_path, monkeypatch,
                                                                    reached):
    import importlib
    import sys

    from parmagic.engine.cache import function_key

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "keyed_inner.py").write_text("def scale(x):\n    return 2 * x\n")
    (tmp_path / "keyed_outer.py").write_text(
        "from keyed_inner import scale\ndef g(x):\n    return scale(x)\n")
    importlib.invalidate_caches()
    try:
        outer = importlib.import_module("keyed_outer")
        namespace = {"keyed_outer": outer, "g": outer.g}
        body = "keyed_outer.g(x)" if reached == "module global" else "g(x)"
        exec(f"def work(x):\n    return {body}\n", namespace)
        before = function_key(namespace["work"])
        assert function_key(namespace["work"]) == before  # nothing changed
        edited = "keyed_inner.py" if reached == "module's import" else "keyed_outer.py"
        path = tmp_path / edited
        path.write_text(path.read_text() + "# edited\n")
        assert function_key(namespace["work"]) != before
    finally:
        sys.modules.pop("keyed_outer", None)
        sys.modules.pop("keyed_inner", None)


RELEASE = __import__("threading").Event()  # lets a stuck item of a thread end


@pytest.fixture
def release_stuck_items():
    RELEASE.clear()
    yield
    RELEASE.set()


def stuck_at_3(x):
    if x == 3:
        RELEASE.wait(60)  # a blocking call: a thread's time limit cannot stop it
    return x * 10


def test_a_stuck_item_after_cached_ones_is_the_one_named(tmp_path, release_stuck_items):
    cached_run(stuck_at_3, [0, 1], tmp_path, backend="threading")
    record, error = cached_run(stuck_at_3, range(4), tmp_path, backend="threading",
                               timeout=0.5)
    assert type(error).__name__ == "ItemTimeoutError"
    assert list(record.errors) == [3]
    assert record.results[:3] == [0, 10, 20]

