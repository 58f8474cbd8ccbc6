"""--bg and parmagic.start: a map in a background thread, with a handle."""

import threading
import time

import pytest
from IPython.core.error import UsageError

from parmagic import BackgroundRun, start


def nap(seconds):
    time.sleep(seconds)
    return seconds


def cell(shell, code):
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def test_start_returns_at_once_and_the_result_comes_later():
    started = time.monotonic()
    handle = start(nap, [0.3] * 6, n_jobs=2)
    assert time.monotonic() - started < 0.3 * 2  # sooner than the run takes
    assert isinstance(handle, BackgroundRun) and not handle.done()
    assert "running in the background" in repr(handle)
    assert handle.result(timeout=30) == [0.3] * 6
    assert handle.status == "done" and handle.done()
    assert "background run ended: 6/6 items done" in repr(handle)


def test_progress_shows_in_the_handle_while_it_runs():
    handle = start(nap, [0.2] * 10, n_jobs=2, batch_size=1)
    time.sleep(0.7)
    done_so_far = handle.n_finished
    assert 0 < done_so_far < 10
    assert f"{done_so_far}/10 items done" in repr(handle) or handle.n_finished > done_so_far
    assert "<i>running in the background" in handle._repr_html_()
    handle.wait()


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_cancel_stops_the_run_and_keeps_finished_results(backend):
    handle = start(nap, [0.2] * 50, n_jobs=2, backend=backend, batch_size=1)
    time.sleep(0.7)
    started = time.monotonic()
    handle.cancel()
    assert time.monotonic() - started < 2
    assert handle.status == "cancelled"
    assert 0 < handle.n_finished < 50
    with pytest.raises(KeyboardInterrupt) as info:
        handle.result()
    assert "cancelled" in info.value.__notes__[0]
    assert start(abs, [-1, -2], n_jobs=2, backend=backend).result(timeout=30) == [1, 2]


def test_errors_are_raised_when_the_result_is_asked_for():
    handle = start(lambda x: 1 / x, [1, 0, 2], n_jobs=2)
    assert handle.wait(timeout=30)  # no error here
    with pytest.raises(ZeroDivisionError) as info:
        handle.result()
    assert "item 1 (0) failed" in info.value.__notes__[0]
    assert handle.status == "failed"


def test_result_timeout_says_the_run_is_still_going():
    handle = start(nap, [1.0], n_jobs=2)
    with pytest.raises(TimeoutError, match="still going"):
        handle.result(timeout=0.1)
    handle.cancel()


def test_bad_input_fails_at_once_not_in_the_background():
    with pytest.raises(ValueError, match="not iterable"):
        start(nap, 5)


def test_magic_bg_binds_out_when_finished_and_the_notebook_stays_usable(shell):
    cell(shell, "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n")
    handle = cell(shell, "%pmap --bg -n 2 -o naps nap [0.3]*4")
    assert shell.user_ns["_parmap"] is handle
    assert "naps" not in shell.user_ns  # not before the run has finished
    assert cell(shell, "1 + 1") == 2  # the notebook is free meanwhile
    assert handle.result(timeout=30) == [0.3] * 4
    assert shell.user_ns["naps"] == [0.3] * 4


def test_cell_magic_bg_and_usage_errors(shell):
    handle = cell(shell, "%%parmap --bg -n 2 range(3)\ndef triple(x):\n    return 3 * x\n")
    assert handle.result(timeout=30) == [0, 3, 6]
    result = shell.run_cell("%pmap --bg -n 2 abs 5")
    assert isinstance(result.error_in_exec, UsageError)


def test_many_background_runs_at_once():
    handles = [start(nap, [0.05] * 4, n_jobs=2, backend="threading") for _ in range(3)]
    assert [h.result(timeout=30) for h in handles] == [[0.05] * 4] * 3
    assert threading.active_count() < 50
