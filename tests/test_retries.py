"""``retries`` and ``retry_on`` through parmagic.run / parmagic.pmap: items
that fail for passing reasons run again, on every backend; a worker that
died is replaced and its items run again; the record keeps the attempts."""

import functools
import os
import time
from pathlib import Path

import pytest

from parmagic import NOT_COMPUTED, ItemTimeoutError, ParmagicInputError, WorkerCrashError, pmap, run

BACKENDS = ["loky", "threading", "multiprocessing", "sequential"]


class FlakyError(Exception):
    """An exception class the test module defines, found by its name."""


def _attempt(folder, x):
    """Count this attempt at item ``x`` in a file of its own; return its number."""
    path = Path(folder) / f"item-{x}"
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    return attempt


def attempts_made(folder, x):
    path = Path(folder) / f"item-{x}"
    return int(path.read_text()) if path.exists() else 0


def flaky(x, folder, error=ConnectionError, failing=(3,), failures=2):
    """Item ``x`` in ``failing`` raises ``error`` on its first ``failures`` attempts."""
    attempt = _attempt(folder, x)
    if x in failing and attempt <= failures:
        raise error(f"attempt {attempt} at {x}")
    return x * 10


def run_recorded(func, items, **kwargs):
    """``run`` that also hands back the record when the run raises."""
    records = []
    try:
        run(func, [items], on_start=records.append, progress=False, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return records[0], exc
    return records[0], None


def on(folder, **options):
    """``flaky`` counting its attempts in ``folder`` (a partial, which the
    multiprocessing backend can pickle)."""
    Path(folder).mkdir(exist_ok=True)
    return functools.partial(flaky, folder=str(folder), **options)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_item_that_fails_twice_succeeds_on_its_third_attempt(backend, tmp_path):
    record, error = run_recorded(on(tmp_path), range(6), n_jobs=2, backend=backend,
                                 retries=2)
    assert error is None
    assert record.results == [0, 10, 20, 30, 40, 50]
    assert record.attempts == {3: 3}
    assert attempts_made(tmp_path, 3) == 3 and attempts_made(tmp_path, 2) == 1
    assert [type(a.exception) for a in record.retried[3]] == [ConnectionError] * 2
    assert "attempt 1 at 3" in record.retried[3][0].traceback  # the worker's traceback
    assert record.errors == {} and record.status == "done"
    assert "1 item needed a retry, up to 3 attempts" in repr(record)
    assert "1 item needed a retry" in record._repr_html_()


@pytest.mark.parametrize("backend", BACKENDS)
def test_when_retries_run_out_the_items_own_exception_says_how_many_attempts(
        backend, tmp_path):
    record, error = run_recorded(on(tmp_path), range(6), n_jobs=2, backend=backend,
                                 retries=1)
    assert type(error) is ConnectionError and str(error) == "attempt 2 at 3"
    assert "parmagic: item 3 (3) failed after 2 attempts;" in error.__notes__[0]
    assert attempts_made(tmp_path, 3) == 2
    assert record.attempts[3] == 2 and list(record.errors) == [3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_retry_on_limits_retries_to_the_exceptions_it_names(backend, tmp_path):
    # a ValueError is not a ConnectionError: it fails at once
    _, error = run_recorded(on(tmp_path, error=ValueError), range(4), n_jobs=2,
                            backend=backend, retries=2, retry_on=("ConnectionError",))
    assert type(error) is ValueError
    assert "item 3 (3) failed;" in error.__notes__[0]  # no "after N attempts"
    assert attempts_made(tmp_path, 3) == 1
    # a subclass of a named class is retried: ConnectionRefusedError
    record, error = run_recorded(
        on(tmp_path / "sub", error=ConnectionRefusedError), range(4), n_jobs=2,
        backend=backend, retries=2, retry_on="ConnectionError,TimeoutError")
    assert error is None and record.attempts == {3: 3}


def test_retry_on_takes_classes_and_names_from_the_functions_globals(tmp_path):
    assert pmap(on(tmp_path, error=KeyError), range(4), n_jobs=2, retries=2,
                retry_on=KeyError, progress=False) == [0, 10, 20, 30]
    # a name is looked up in the function's globals, as a notebook's would be
    folder = str(tmp_path / "own")
    os.mkdir(folder)
    record, error = run_recorded(lambda x: flaky(x, folder, error=FlakyError), range(4),
                                 n_jobs=2, retries=2, retry_on="FlakyError")
    assert error is None and record.attempts == {3: 3}


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_collect_keeps_what_a_retry_saved_and_reports_what_ran_out(backend, tmp_path):
    func = on(tmp_path, failing=(1, 4), failures=1)
    record, error = run_recorded(func, range(6), n_jobs=2, backend=backend,
                                 retries=1, on_error="collect")
    assert error is None and record.results == [0, 10, 20, 30, 40, 50]
    assert record.attempts == {1: 2, 4: 2}
    assert "2 items needed a retry" in repr(record)
    func = on(tmp_path / "more", failing=(1, 4), failures=5)
    record, error = run_recorded(func, range(6), n_jobs=2, backend=backend,
                                 retries=1, on_error="collect")
    assert isinstance(error, ExceptionGroup) and str(error).startswith("2 of 6 items failed")
    assert [e.__notes__[0] for e in error.exceptions] == [
        "parmagic: item 1 (1) failed after 2 attempts",
        "parmagic: item 4 (4) failed after 2 attempts",
    ]
    assert record.results == [0, NOT_COMPUTED, 20, 30, NOT_COMPUTED, 50]
    assert sorted(record.errors) == [1, 4]


def crash_once(x, folder):
    """Item 2's first attempt kills its worker process (noting its pid)."""
    attempt = _attempt(folder, x)
    if x == 2 and attempt == 1:
        (Path(folder) / "crashed-pid").write_text(str(os.getpid()))
        os._exit(3)
    return x, os.getpid()


def test_a_crashed_item_runs_again_on_a_fresh_worker(tmp_path):
    record, error = run_recorded(lambda x: crash_once(x, str(tmp_path)), range(8),
                                 n_jobs=2, retries=1)
    assert error is None
    assert [x for x, _ in record.results] == list(range(8))
    crashed_pid = int((tmp_path / "crashed-pid").read_text())
    assert record.results[2][1] != crashed_pid
    assert attempts_made(tmp_path, 2) == 2
    # the crash counted an attempt for each item in flight, item 2 among them
    assert 2 in record.attempts and set(record.attempts.values()) == {2}
    crash = record.retried[2][0].exception
    assert isinstance(crash, WorkerCrashError) and 2 in crash.items
    assert set(record.attempts) == set(crash.items)


def test_a_crash_is_retried_only_when_retry_on_names_it(tmp_path):
    func = lambda x: crash_once(x, str(tmp_path))  # noqa: E731
    _, error = run_recorded(func, range(4), n_jobs=2, retries=1,
                            retry_on="ConnectionError,RuntimeError")
    assert isinstance(error, WorkerCrashError)  # though it is a RuntimeError
    (tmp_path / "item-2").unlink()
    record, error = run_recorded(func, range(4), n_jobs=2, retries=1,
                                 retry_on="WorkerCrashError")
    assert error is None and record.attempts[2] == 2


def slow_first_time(x, folder):
    if _attempt(folder, x) == 1 and x == 1:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # Python code: stopped at its limit
            pass
    return x


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_an_item_past_its_time_limit_runs_again(backend, tmp_path):
    record, error = run_recorded(lambda x: slow_first_time(x, str(tmp_path)), range(3),
                                 n_jobs=2, backend=backend, timeout=0.5, retries=1)
    assert error is None and record.results == [0, 1, 2]
    assert type(record.retried[1][0].exception) is ItemTimeoutError


def test_without_retries_nothing_runs_twice(tmp_path):
    record, error = run_recorded(on(tmp_path), range(4), n_jobs=2)
    assert type(error) is ConnectionError
    assert "item 3 (3) failed;" in error.__notes__[0]
    assert attempts_made(tmp_path, 3) == 1 and record.attempts == {}
    assert "retry" not in repr(record)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"retries": 1.5}, "not 1.5"),
        ({"retries": True}, "not True"),
        ({"retries": 1, "retry_on": "Nope"}, "no exception class named 'Nope'"),
        ({"retries": 1, "retry_on": [len]}, "is not an exception class"),
        ({"retry_on": "ValueError"}, "give retries=N"),
    ],
)
def test_bad_retry_settings_are_input_errors(options, message):
    with pytest.raises(ParmagicInputError, match=message):
        pmap(abs, [1], **options)


def test_attempts_are_listed_in_item_order_whichever_failed_first():
    from parmagic.runs.report import ParmapRecord

    record = ParmapRecord("f", "loky", 2, 6)
    for index in (5, 2, 5):  # failures arrive in any order
        record.add_failed_attempt(index, index, ValueError(index), "")
    assert list(record.attempts.items()) == [(2, 2), (5, 3)]
