"""Failures without IPython: errors, crashes, time limits, pickling,
interrupts and nesting, through parmagic.run / parmagic.pmap."""

import ctypes
import os
import signal
import sys
import threading
import time
import types

import pytest

from shown import traceback_text

from parmagic import NOT_COMPUTED, ItemExitError, ItemTimeoutError, NotPicklableError, WorkerCrashError, pmap, run
from parmagic.common.errors import UnpicklableExceptionError
from parmagic.worker.calls import CallOptions, call_item
from platforms import forces_fallback, needs_posix
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
    [
        pytest.param("segfault", "segmentation fault",
                     marks=needs_posix("a segfault that ends the process")),
        ("exit", "EXIT(1)"),
        pytest.param("killed", "too much memory", marks=needs_posix("SIGKILL")),
    ],
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
    assert "sys.exit(3)" in traceback_text(error)  # the line that called it


@needs_posix("SIGALRM, which stops time.sleep where the watchdog cannot")
@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "sequential"])
def test_timeout_stops_the_item_and_names_it(backend):
    started = time.monotonic()
    record, error = run_recorded(nap, [[0.1, 30, 0.1]], n_jobs=2, backend=backend,
                                 timeout=1)
    assert time.monotonic() - started < 10
    assert isinstance(error, ItemTimeoutError)
    assert "1 s time limit" in str(error)
    assert "item 1 (30) failed" in error.__notes__[0]
    assert "time.sleep(seconds)" in traceback_text(error)  # where it was stopped
    assert pmap(abs, [-1], n_jobs=2, backend=backend) == [1]


def spin(seconds):
    """Python code busy for ``seconds`` (unlike time.sleep, a thread's
    watchdog can stop it); returns the worker's pid."""
    end = time.perf_counter() + seconds
    # one line: 3.14 puts the loop's interrupt check on the body's line
    while time.perf_counter() < end: pass  # noqa: E701
    return os.getpid()


@pytest.fixture
def watchdog_forced(monkeypatch):
    """Items are stopped by the watchdog thread, as where there is no SIGALRM."""
    monkeypatch.setattr(CallOptions, "force_watchdog", True)


def test_watchdog_stops_python_code_at_the_limit_in_any_thread():
    options = CallOptions(capture=False, timeout=0.3, watchdog=True)
    batches = []
    helper = threading.Thread(target=lambda: batches.append(call_item(spin, 7, (60,), options)))
    helper.start()
    batches.append(call_item(spin, 7, (60,), options))  # in the main thread
    helper.join(timeout=20)
    assert not helper.is_alive()
    for batch in batches:
        error, frames = batch.failures[7]
        assert type(error) is ItemTimeoutError
        assert str(error) == "the item ran longer than its 0.3 s time limit"
        assert frames[-1][3].startswith("while time.perf_counter() < end: pass")  # where it was stopped


def test_watchdog_never_hits_the_code_after_an_item():
    # items that end about when their limit does, in several threads: each
    # finishes or times out, nothing escapes into the loop, nothing hangs
    options = CallOptions(capture=False, timeout=0.002, watchdog=True)
    outcomes, escaped = [], []

    def many_items():
        try:
            for index in range(300):
                batch = call_item(spin, index, (0.002,), options)
                outcomes.append(type(batch.failures[index][0]) if batch.failures else int)
                sum(range(100))  # code after the item
        except BaseException as exc:  # noqa: BLE001 - what the test looks for
            escaped.append(exc)

    threads = [threading.Thread(target=many_items) for _ in range(3)]
    for thread in threads:
        thread.start()
    many_items()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)  # no deadlock
    assert escaped == []
    assert len(outcomes) == 1200 and set(outcomes) <= {int, ItemTimeoutError}


@pytest.mark.parametrize("backend", ["loky", "threading", "sequential"])
@forces_fallback("SIGALRM")
def test_watchdog_stops_the_item_at_its_limit_and_its_worker_lives(backend, watchdog_forced):
    pmap(abs, [1, 2], n_jobs=2, backend=backend)  # the workers the run will use
    before = {process.pid for process in worker_processes()}
    record, error = run_recorded(spin, [[0.05, 60, 0.05, 0.05]], n_jobs=2, backend=backend,
                                 timeout=0.5, on_error="collect")
    assert isinstance(error, ExceptionGroup)
    assert list(record.errors) == [1]
    stopped = record.errors[1].exception
    assert str(stopped) == "the item ran longer than its 0.5 s time limit"  # not a kill
    assert "while time.perf_counter() < end: pass" in traceback_text(stopped)
    assert "item 1 (60) failed" in stopped.__notes__[0]
    pids = {record.results[i] for i in (0, 2, 3)}
    if backend == "loky":  # the same workers, none was stopped
        assert before and pids <= before <= {p.pid for p in worker_processes()}
    else:
        assert pids == {os.getpid()}


release_blocked_threads = threading.Event()


def _blocks(x):
    if x:
        release_blocked_threads.wait()  # like compiled code: no Python runs meanwhile
    return x


def test_timeout_of_a_thread_in_compiled_code_names_the_item_and_ends_the_run():
    try:
        record, error = run_recorded(_blocks, [[0, 1, 0]], n_jobs=2, backend="threading",
                                     timeout=0.3)
    finally:
        release_blocked_threads.set()
    assert isinstance(error, ItemTimeoutError)
    assert "its 0.3 s time limit and did not stop when told to" in str(error)
    assert "a thread cannot be interrupted" in str(error)
    assert "item 1 (1) failed" in error.__notes__[0]


def _ignores_alarms(seconds):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)  # like compiled code that never checks for signals
    return seconds


@needs_posix("pthread_sigmask and SIGALRM")
def test_timeout_stops_an_item_that_ignores_it_and_collect_goes_on():
    started = time.monotonic()
    record, error = run_recorded(_ignores_alarms, [[0.1, 60, 0.1, 0.1]], n_jobs=2,
                                 timeout=0.5, on_error="collect")
    assert time.monotonic() - started < 20
    assert isinstance(error, ExceptionGroup)
    assert list(record.errors) == [1]
    assert "did not stop when told to" in str(record.errors[1].exception)
    assert [record.results[i] for i in (0, 2, 3)] == [0.1, 0.1, 0.1]


NOTEBOOK_CELL = """
PREFIX = "odd"

class MyError(Exception):
    def __str__(self):
        return f"{PREFIX} {self.args[0]}"

def fails_on_odd(x):
    if x % 2:
        raise MyError(x)
    return x
"""


@pytest.fixture
def notebook(monkeypatch):
    """What running NOTEBOOK_CELL in a notebook defines, in a ``__main__``
    module as a kernel has: cloudpickle sends its classes by value, and a
    forked worker (multiprocessing) finds them by name."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec(NOTEBOOK_CELL, vars(main))  # noqa: S102 - the test's own code
    return vars(main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_classes_defined_in_the_notebook_keep_their_type(backend, notebook):
    MyError = notebook["MyError"]
    try:
        pmap(notebook["fails_on_odd"], [0, 1, 2], n_jobs=2, backend=backend, progress=False)
    except MyError as exc:
        caught = exc
    assert type(caught) is MyError and str(caught) == "odd 1"
    assert "item 1 (1) failed" in caught.__notes__[0]
    assert "line 10, in fails_on_odd" in traceback_text(caught)  # where it was raised
    groups = []
    try:
        pmap(notebook["fails_on_odd"], range(5), n_jobs=2, backend=backend,
             on_error="collect", progress=False)
    except* MyError as group:
        groups.append(group)
    assert [type(e) for e in groups[0].exceptions] == [MyError, MyError]
    assert [str(e) for e in groups[0].exceptions] == ["odd 1", "odd 3"]
    # the class came back as the notebook's own and kept its own methods,
    # which still read the notebook's globals
    notebook["PREFIX"] = "uneven"
    assert str(caught) == "uneven 1"


def test_results_of_notebook_classes_leave_the_class_as_it_was(notebook):
    MyError = notebook["MyError"]
    method = MyError.__str__
    [result] = pmap(MyError, [5], n_jobs=2)
    assert type(result) is MyError
    assert MyError.__str__ is method  # not replaced by the worker's copy


class HoldsALock(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class TakesTwoArguments(Exception):
    def __init__(self, code, detail):  # unpickling calls it with one: the message
        super().__init__(f"{code}: {detail}")


def _raises(kind):
    if kind == "lock":
        raise HoldsALock("cannot go back")
    if kind == "two":
        raise TakesTwoArguments(42, "cannot be rebuilt")
    return kind


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_an_exception_that_cannot_be_sent_back_is_named_by_a_stand_in(backend):
    record, error = run_recorded(_raises, [["ok", "lock", "two", "ok"]], n_jobs=2,
                                 backend=backend, on_error="collect")
    assert [record.results[i] for i in (0, 3)] == ["ok", "ok"]
    locked, rebuilt = record.errors[1].exception, record.errors[2].exception
    assert type(locked) is type(rebuilt) is UnpicklableExceptionError
    assert str(locked).startswith("test_failures.HoldsALock: cannot go back [")
    assert "cannot pickle '_thread.lock' object" in str(locked)
    assert str(rebuilt).startswith("test_failures.TakesTwoArguments: 42: cannot be rebuilt [")
    assert "missing 1 required positional argument" in str(rebuilt)
    assert rebuilt.type_name == "test_failures.TakesTwoArguments"
    assert 'raise TakesTwoArguments(42, "cannot be rebuilt")' in traceback_text(rebuilt)


def test_threads_pass_any_exception_as_it_is():
    record, error = run_recorded(_raises, [["lock", "two"]], n_jobs=2, backend="threading",
                                 on_error="collect")
    assert [type(e) for e in error.exceptions] == [HoldsALock, TakesTwoArguments]


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


@needs_posix("SIGINT raised in the notebook process")
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
