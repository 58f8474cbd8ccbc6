"""--bg and parmagic.start: a map in a background thread, with a handle."""

import functools
import os
import threading
import time

import pytest
import waiting
from IPython.core.error import UsageError

from parmagic import NOT_COMPUTED, BackgroundRun, start

DEADLINE = 30  # seconds: a wait that takes longer fails, saying what it waited for


def nap(seconds):
    time.sleep(seconds)
    return seconds


def wait_for_file(path):
    """In an item: block until the test creates ``path``."""
    ends = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > ends:
            raise TimeoutError(f"the test never created {path}")
        time.sleep(0.01)


def held_back(x, gate, free):
    """Items below ``free`` finish at once; the others wait for ``gate``."""
    if x >= free:
        wait_for_file(gate)
    return x


def until(condition, what):
    waiting.until(condition, what, DEADLINE, every=0.01)


def cell(shell, code):
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def test_start_returns_at_once_and_the_result_comes_later(tmp_path):
    gate = tmp_path / "open"
    handle = start(functools.partial(held_back, gate=gate, free=0), range(6), n_jobs=2)
    # it returned while no item could finish
    assert isinstance(handle, BackgroundRun) and not handle.done()
    assert repr(handle).startswith("running in the background: 0 of 6 finished, 0 failed")
    gate.touch()
    assert handle.result(timeout=DEADLINE) == list(range(6))
    assert handle.status == "done" and handle.done()
    assert repr(handle).startswith("background run of func done: 6 of 6 finished, 0 failed")


def test_progress_shows_in_the_handle_while_it_runs(tmp_path):
    gate = tmp_path / "open"
    # items 0-2 finish; 3 and 4 hold both workers until the gate opens
    items = functools.partial(held_back, gate=gate, free=3)
    handle = start(items, range(10), n_jobs=2, batch_size=1)
    until(lambda: handle.n_finished == 3, "3 items to finish")
    assert repr(handle).startswith("running in the background: 3 of 10 finished, 0 failed")
    assert "<i>running in the background: 3 of 10 finished" in handle._repr_html_()
    assert handle.status == "running" and not handle.done()
    gate.touch()
    assert handle.result(timeout=DEADLINE) == list(range(10))
    assert repr(handle).startswith("background run of func done: 10 of 10 finished, 0 failed")


def test_cancel_stops_busy_workers_and_keeps_finished_results(tmp_path):
    # items 2 and 3 hold both workers (the gate never opens): cancelling
    # stops those workers, keeps items 0 and 1, and starts nothing else
    handle = start(functools.partial(held_back, gate=tmp_path / "never", free=2),
                   range(50), n_jobs=2, batch_size=1)
    until(lambda: handle.n_finished == 2, "2 items to finish")
    started = time.monotonic()
    handle.cancel()
    assert time.monotonic() - started < 2
    assert handle.status == "cancelled" and handle.n_finished == 2
    # results covers the items read so far: 0 and 1, then the cancelled ones
    assert handle.results[:2] == [0, 1]
    assert set(handle.results[2:]) == {NOT_COMPUTED}
    assert repr(handle).startswith("background run of func cancelled: 2 of 50 finished, 0 failed")
    with pytest.raises(KeyboardInterrupt) as info:
        handle.result()
    assert "cancelled" in info.value.__notes__[0]
    assert start(abs, [-1, -2], n_jobs=2).result(timeout=DEADLINE) == [1, 2]


def test_cancel_with_threads_lets_running_items_finish_and_starts_no_more():
    # a thread cannot be stopped: the run ends once its running items have
    handle = start(nap, [0.2] * 50, n_jobs=2, backend="threading", batch_size=1)
    until(lambda: handle.n_finished >= 2, "2 items to finish")
    started = time.monotonic()
    handle.cancel()
    assert time.monotonic() - started < 2
    finished = handle.n_finished
    assert handle.status == "cancelled" and finished < 50
    assert handle.results[:finished] == [0.2] * finished
    assert set(handle.results[finished:]) <= {NOT_COMPUTED}
    assert repr(handle).startswith(f"background run of nap cancelled: {finished} of 50 finished")
    with pytest.raises(KeyboardInterrupt) as info:
        handle.result()
    assert "cancelled" in info.value.__notes__[0]
    assert start(abs, [-1, -2], n_jobs=2, backend="threading").result(timeout=DEADLINE) == [1, 2]


def test_errors_are_raised_when_the_result_is_asked_for():
    handle = start(lambda x: 1 / x, [1, 0, 2], n_jobs=2)
    assert handle.wait(timeout=30)  # no error here
    with pytest.raises(ZeroDivisionError) as info:
        handle.result()
    assert "item 1 (0) failed" in info.value.__notes__[0]
    assert handle.status == "failed"


def test_result_timeout_says_the_run_is_still_going(tmp_path):
    handle = start(functools.partial(held_back, gate=tmp_path / "never", free=0), [1],
                   n_jobs=2)
    with pytest.raises(TimeoutError, match="still going after 0.1 s"):
        handle.result(timeout=0.1)
    handle.cancel()
    assert handle.status == "cancelled"


def test_bad_input_fails_at_once_not_in_the_background():
    with pytest.raises(ValueError, match="not iterable"):
        start(nap, 5)


def test_magic_bg_binds_out_when_finished_and_the_notebook_stays_usable(shell, tmp_path):
    gate = tmp_path / "open"
    shell.user_ns.update(held_back=held_back, gate=gate)
    handle = cell(shell, "%pmap --bg -n 2 -o out (lambda x: held_back(x, gate, 0)) range(4)")
    assert shell.user_ns["_parmap"] is handle
    assert cell(shell, "1 + 1") == 2  # the notebook is free while no item can finish
    assert "out" not in shell.user_ns  # not before the run has finished
    gate.touch()
    assert handle.result(timeout=DEADLINE) == [0, 1, 2, 3]
    assert shell.user_ns["out"] == [0, 1, 2, 3]


def test_cell_magic_bg_and_usage_errors(shell):
    handle = cell(shell, "%%parmap --bg -n 2 range(3)\ndef triple(x):\n    return 3 * x\n")
    assert handle.result(timeout=30) == [0, 3, 6]
    result = shell.run_cell("%pmap --bg -n 2 abs 5")
    assert isinstance(result.error_in_exec, UsageError)


def test_many_background_runs_at_once():
    handles = [start(nap, [0.05] * 4, n_jobs=2, backend="threading") for _ in range(3)]
    assert [h.result(timeout=30) for h in handles] == [[0.05] * 4] * 3
    assert threading.active_count() < 50


def test_the_live_view_shows_the_end_before_the_cell_that_waited_goes_on(shell, tmp_path,
                                                                         monkeypatch):
    """In Jupyter the run's cell is updated in place. A cell that cancels or
    waits must not go on (and end: the kernel says idle, and the notebook
    stops listening) before the final update went out, or the view keeps
    saying "running". So the final state is sent before the run is done."""
    from parmagic.display import live_view
    sent = []  # (whether the run was done then, what the view said)

    def send(bundle, **_):
        sent.append((handles[-1].done() if handles else False, bundle["text/plain"]))

    handles = []
    monkeypatch.setattr(live_view, "in_kernel", lambda: True)
    monkeypatch.setattr(live_view, "display", send)
    monkeypatch.setattr(live_view, "update_display", send)
    gate = tmp_path / "open"
    shell.user_ns.update(held_back=held_back, gate=gate)
    for ending, expected in [("cancel", "cancelled: 2 of 6"), ("wait", "done: 6 of 6")]:
        handles.append(cell(shell, "%pmap --bg -n 2 (lambda x: held_back(x, gate, 2)) range(6)"))
        until(lambda: handles[-1].n_finished == 2, "the first two items")
        if ending == "wait":
            gate.touch()
        getattr(handles[-1], ending)()
        final = f"background run of <lambda> {expected}"
        assert sent[-1][1].startswith(final)
        first_final = next(done for done, text in sent if text.startswith(final))
        assert not first_final, "the final state went out only after the run was done"
