"""Before a run whose workers' copies of its data could not fit in free
memory, a MemoryFitWarning says so and what to do; small runs and runs
that fit are not looked at."""

import warnings

import numpy as np
import pytest

from parmagic import pmap
from parmagic.engine import memory_fit
from parmagic.engine.memory_fit import MemoryFitWarning

MB = 1 << 20


def fit_warnings(func, items, free, monkeypatch, n_jobs=2):
    asked = []

    def available():
        asked.append(True)
        return free

    monkeypatch.setattr(memory_fit, "_available", available)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = pmap(func, items, n_jobs=n_jobs, progress=False)
    return results, [w for w in caught if w.category is MemoryFitWarning], bool(asked)


def carrying(blob):
    return lambda x: len(blob) + x  # a lambda: pickled by value, blob with it


def test_large_globals_that_would_not_fit_twice_are_warned_about(monkeypatch):
    blob = b"x" * (80 * MB)
    results, shown, _ = fit_warnings(carrying(blob), range(4), 120 * MB, monkeypatch)
    assert results == [len(blob) + x for x in range(4)]  # the run still runs
    (warning,) = shown
    text = str(warning.message)
    assert "each of the 2 workers" in text and "globals" in text
    assert "more than the 120 MB of memory free" in text and "fewer workers" in text


def test_large_items_are_counted_per_chunk(monkeypatch):
    items = [b"y" * (40 * MB), b"z" * (40 * MB)]
    _, shown, _ = fit_warnings(len, items, 100 * MB, monkeypatch)
    assert len(shown) == 1 and "its chunks of items" in str(shown[0].message)


def test_copies_that_fit_are_not_warned_about(monkeypatch):
    _, shown, asked = fit_warnings(carrying(b"x" * (80 * MB)), range(4), 8 << 30,
                                   monkeypatch)
    assert asked and not shown


def test_small_runs_and_shared_arrays_are_not_looked_at(monkeypatch):
    _, shown, asked = fit_warnings(abs, range(100), 1, monkeypatch)
    assert not shown and not asked
    array = np.ones(100 * MB // 8)  # shared through the store: not a copy per worker
    _, shown, asked = fit_warnings(carrying(array), range(4), 1, monkeypatch)
    assert not shown and not asked


@pytest.mark.parametrize("function_bytes, chunk_bytes, workers, free, warned", [
    (100 * MB, 0, 4, 300 * MB, True), (100 * MB, 0, 2, 300 * MB, False),
    (0, 50 * MB, 2, 150 * MB, True), (10 * MB, 10 * MB, 8, 1, False)])
def test_check_counts_each_worker_a_function_and_two_chunks(
        monkeypatch, function_bytes, chunk_bytes, workers, free, warned):
    monkeypatch.setattr(memory_fit, "_available", lambda: free)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert memory_fit.check(function_bytes, chunk_bytes, workers) is warned
