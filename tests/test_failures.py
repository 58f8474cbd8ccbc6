"""Failures without IPython: errors, crashes, time limits, pickling,
interrupts and nesting, through parmagic.run / parmagic.pmap."""

import ctypes
import os
import signal
import sys
import threading
import time

import pytest

from parmagic import (
    NOT_COMPUTED,
    ItemExitError,
    ItemTimeoutError,
    NotPicklableError,
    WorkerCrashError,
    pmap,
    run,
)
from processes import worker_processes

BACKENDS = ["loky", "threading", "multiprocessing", "sequential"]


def reciprocal(x):
    return 1 / x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def run_recorded(*args, **kwargs):
    """``run`` that also hands back the record when the run raises."""
    records = []
    try:
        run(*args, on_start=records.append, progress=False, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return records[0], exc
    return records[0], None


@pytest.mark.parametrize("backend", BACKENDS)
def test_collect_runs_every_item_and_raises_a_group(backend):
    data = [1, 0, 2, 0, 0, 0, 4]
    record, error = run_recorded(reciprocal, [data], n_jobs=2, backend=backend,
                                 on_error="collect")
    assert isinstance(error, ExceptionGroup)
    assert str(error).startswith("4 of 7 items failed")
    assert "and 1 more are in _parmap.errors" in str(error)
    assert [type(e) for e in error.exceptions] == [ZeroDivisionError] * 3
    assert "item 1 (0) failed" in error.exceptions[0].__notes__[0]
    assert sorted(record.errors) == [1, 3, 4, 5]
    assert [record.results[i] for i in (0, 2, 6)] == [1.0, 0.5, 0.25]
    assert record.status == "failed"


def test_collect_without_failures_returns_the_results():
    assert pmap(reciprocal, [1, 2], n_jobs=2, on_error="collect") == [1.0, 0.5]


def test_a_failure_stops_the_run_early():
    calls = list(range(200))
    record, error = run_recorded(
        lambda x: 1 / 0 if x == 0 else nap(0.05), [calls], n_jobs=2, batch_size=1
    )
    assert isinstance(error, ZeroDivisionError)
    assert len(record.results) < 20  # only what was queued for the workers ran


def test_results_that_finished_around_a_failure_are_kept():
    record, error = run_recorded(
        lambda x: 1 / 0 if x == 2 else x, [range(4)], n_jobs=2, batch_size=1
    )
    assert isinstance(error, ZeroDivisionError)
    # items that were already running finish within the grace period
    assert record.results == [0, 1, NOT_COMPUTED, 3]
    assert "3 of 4 results had finished" in error.__notes__[0]


def _crash(how):
    if how == "segfault":
        ctypes.string_at(0)
    if how == "exit":
        os._exit(1)
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    return how


@pytest.mark.parametrize(
    "how, says",
    [("segfault", "segmentation fault"), ("exit", "EXIT(1)"), ("killed", "too much memory")],
)
def test_worker_crash_names_the_items_in_flight(how, says):
    record, error = run_recorded(_crash, [["ok", "ok", how, "ok"]], n_jobs=2)
    assert isinstance(error, WorkerCrashError)
    assert says in str(error) and 2 in error.items
    assert "The notebook is fine" in str(error)
    assert all(record.results[i] == "ok" for i in range(4) if i not in record.errors)
    assert pmap(abs, [-1, -2], n_jobs=2) == [1, 2]  # a fresh pool


def test_collect_goes_on_after_a_crash_on_a_fresh_pool():
    data = ["ok"] * 3 + ["exit"] + ["ok"] * 12
    record, error = run_recorded(_crash, [data], n_jobs=2, batch_size=1, on_error="collect")
    assert isinstance(error, ExceptionGroup)
    assert 3 in record.errors
    lost = set(record.errors)
    assert all(record.results[i] == "ok" for i in range(16) if i not in lost)
    assert len(lost) <= 5  # the items in flight when the worker died, no more


@pytest.mark.parametrize("backend", ["loky", "sequential"])
def test_sys_exit_in_an_item_is_an_item_error(backend):
    record, error = run_recorded(lambda x: sys.exit(3), [[1]], n_jobs=2, backend=backend)
    assert isinstance(error, ItemExitError)
    assert "sys.exit(3)" in str(error)
    assert "sys.exit(3)" in str(error.__cause__)  # the line that called it


@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "sequential"])
def test_timeout_stops_the_item_and_names_it(backend):
    started = time.monotonic()
    record, error = run_recorded(nap, [[0.1, 30, 0.1]], n_jobs=2, backend=backend,
                                 timeout=1)
    assert time.monotonic() - started < 10
    assert isinstance(error, ItemTimeoutError)
    assert "1 s time limit" in str(error)
    assert "item 1 (30) failed" in error.__notes__[0]
    assert "time.sleep(seconds)" in str(error.__cause__)  # where it was stopped
    assert pmap(abs, [-1], n_jobs=2, backend=backend) == [1]


def test_timeout_with_threads_names_the_item_and_ends_the_run():
    record, error = run_recorded(nap, [[0.1, 3, 0.1]], n_jobs=2, backend="threading",
                                 timeout=0.5)
    assert isinstance(error, ItemTimeoutError)
    assert "a thread cannot be stopped" in str(error)
    assert "item 1 (3) failed" in error.__notes__[0]


def _ignores_alarms(seconds):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)  # like compiled code that never checks for signals
    return seconds


def test_timeout_stops_an_item_that_ignores_it_and_collect_goes_on():
    started = time.monotonic()
    record, error = run_recorded(_ignores_alarms, [[0.1, 60, 0.1, 0.1]], n_jobs=2,
                                 timeout=0.5, on_error="collect")
    assert time.monotonic() - started < 20
    assert isinstance(error, ExceptionGroup)
    assert list(record.errors) == [1]
    assert "did not stop when told to" in str(record.errors[1].exception)
    assert [record.results[i] for i in (0, 2, 3)] == [0.1, 0.1, 0.1]


lock = threading.Lock()


def _uses_lock(x):
    with lock:
        return x


def test_unpicklable_function_names_the_global_and_suggests_threads():
    with pytest.raises(NotPicklableError) as info:
        pmap(_uses_lock_by_value(), [1, 2], n_jobs=2)
    assert "the global 'lock'" in str(info.value)
    assert "-b threading" in str(info.value)
    assert pmap(_uses_lock, [1, 2], n_jobs=2, backend="threading") == [1, 2]


def _uses_lock_by_value():
    # a function pickled by value, as notebook functions are
    namespace = {"lock": threading.Lock()}
    exec("def uses_lock(x):\n    with lock:\n        return x\n", namespace)
    return namespace["uses_lock"]


def test_unpicklable_closure_variable_is_named():
    guard = threading.Lock()
    with pytest.raises(NotPicklableError, match="the closure variable 'guard'"):
        pmap(lambda x: guard and x, [1], n_jobs=2)


def test_unpicklable_item_is_named_and_the_others_run():
    data = [[1], (i for i in range(3)), [2, 3]]
    record, error = run_recorded(len, [data], n_jobs=2, on_error="collect")
    assert list(record.errors) == [1]
    assert "item 1 (<generator object" in str(record.errors[1].exception)
    assert record.results[0] == 1 and record.results[2] == 2


def test_unpicklable_result_is_pinned_on_its_item():
    data = [1, 2, 3, 4]
    record, error = run_recorded(
        lambda x: threading.Lock() if x == 3 else x, [data], n_jobs=2, batch_size=4,
        on_error="collect",
    )
    assert list(record.errors) == [2]
    assert "the result, a lock" in str(record.errors[2].exception)
    assert [record.results[i] for i in (0, 1, 3)] == [1, 2, 4]


def test_nested_pmap_runs_serially_inside_the_worker():
    before = len(worker_processes())
    nested = pmap(lambda x: pmap(abs, [x, -x]), range(3), n_jobs=2)
    assert nested == [[0, 0], [1, 1], [2, 2]]
    assert len(worker_processes()) <= max(before, 2)  # no pool inside the workers


def test_interrupt_kills_busy_workers_keeps_results_and_the_next_call_works():
    timer = threading.Timer(1.5, lambda: signal.raise_signal(signal.SIGINT))
    timer.start()
    started = time.monotonic()
    record, error = run_recorded(nap, [[0.2] * 100], n_jobs=2)
    assert isinstance(error, KeyboardInterrupt)
    assert time.monotonic() - started < 3.5
    assert record.status == "interrupted"
    assert 2 <= record.n_finished < 100
    assert "interrupted" in error.__notes__[0]
    assert pmap(abs, [-1, -2], n_jobs=2) == [1, 2]
