"""``pmap(..., as_iter=True)``, ``unordered=True`` and ``%pmap --iter``:
results as they come, a bounded read of the input, and a run that stops
when the loop is left."""

import os
import threading
import time

import pytest
from waiting import until

from parmagic import ParmagicInputError, pmap

gate = threading.Event()


def waits_after_first(x):
    if x > 0:
        assert gate.wait(30), "the gate never opened"
    return x * 10


@pytest.fixture(autouse=True)
def closed_gate():
    gate.clear()
    yield
    gate.set()  # items still waiting end


@pytest.mark.timeout(60)
def test_the_first_result_comes_before_the_others_are_done():
    results = pmap(waits_after_first, range(5), backend="threading", n_jobs=2, as_iter=True)
    assert next(results) == 0  # while items 1.. wait for the gate
    gate.set()
    assert list(results) == [10, 20, 30, 40]
    assert results.record.status == "done"


def first_waits_for(x, gate_file):
    if x == 0:
        ends = time.monotonic() + 30
        while not os.path.exists(gate_file):
            assert time.monotonic() < ends, "the gate never opened"
            time.sleep(0.01)
    return x


@pytest.mark.timeout(60)
def test_unordered_yields_index_and_result_as_items_finish(tmp_path):
    gate_file = str(tmp_path / "gate")
    results = pmap(first_waits_for, range(4), [gate_file] * 4, n_jobs=2, batch_size=1,
                   unordered=True)
    first = next(results)  # while item 0 waits in its worker
    assert first in [(1, 1), (2, 2), (3, 3)]
    open(gate_file, "w").close()
    assert sorted([first, *results]) == [(0, 0), (1, 1), (2, 2), (3, 3)]


class Counted:
    """An input that counts how far it was read."""

    def __init__(self, n):
        self.n, self.read = n, 0

    def __iter__(self):
        for item in range(self.n):
            self.read += 1
            yield item


@pytest.mark.timeout(60)
def test_a_caller_who_takes_nothing_pauses_the_run():
    data = Counted(10_000_000)
    results = pmap(abs, data, n_jobs=2, as_iter=True)
    until(lambda: results.record.n_finished >= 128, "the first 128 results")
    time.sleep(0.3)  # what is in flight lands; then nothing more is read
    read = data.read
    time.sleep(0.3)  # time enough to read far more, if nothing held the run back
    assert data.read == read < 10_000_000
    assert next(results) == 0
    results.close()


def first_waits_for_a_later_one(x, gate_file):
    if x == 300:
        open(gate_file, "w").close()
    return first_waits_for(x, gate_file)


@pytest.mark.timeout(60)
def test_a_slow_first_item_does_not_stop_the_run_for_good(tmp_path):
    """More than the room's worth of later results arrive before item 0:
    the ordered caller waits for item 0, so the run must go on."""
    gate_file = str(tmp_path / "item 300 ran")
    results = pmap(first_waits_for_a_later_one, range(400), [gate_file] * 400, n_jobs=2,
                   batch_size=1, as_iter=True)
    assert list(results) == list(range(400))


@pytest.mark.timeout(60)
def test_leaving_the_loop_stops_the_run_and_keeps_what_finished():
    data = Counted(100_000)
    with pmap(abs, data, backend="threading", n_jobs=2, as_iter=True) as results:
        for value in results:
            if value == 3:
                break
    assert results.record.status == "cancelled"
    assert results.record.results[:4] == [0, 1, 2, 3] and data.read < 1000


def fails_on_three(x):
    if x == 3:
        raise ValueError(x)
    return x


def test_a_failure_is_raised_where_the_loop_reaches_it():
    seen = []
    with pytest.raises(ValueError):
        for value in pmap(fails_on_three, range(10), backend="threading", n_jobs=2,
                          as_iter=True):
            seen.append(value)
    assert seen == [0, 1, 2]


def test_with_collect_failures_are_left_out_and_raised_together_at_the_end():
    seen = []
    with pytest.raises(ExceptionGroup):
        for value in pmap(fails_on_three, range(6), n_jobs=2, as_iter=True,
                          on_error="collect"):
            seen.append(value)
    assert seen == [0, 1, 2, 4, 5]


def test_loky_results_come_in_order():
    assert list(pmap(abs, range(-20, 0), n_jobs=2, as_iter=True)) == list(range(20, 0, -1))


def test_a_bad_input_is_refused_at_the_call():
    with pytest.raises(ParmagicInputError, match="not iterable"):
        pmap(abs, 5, as_iter=True)


def test_the_magic_returns_the_iterator_and_binds_the_record(shell):
    results = shell.run_line_magic("pmap", "--iter -b threading abs range(-3, 0)")
    assert list(results) == [3, 2, 1]
    assert shell.user_ns["_parmap"] is results.record
    assert sorted(shell.run_line_magic("pmap", "--unordered -b threading abs [-1, -2]")) == [
        (0, 1), (1, 2)]


def test_the_magic_refuses_what_needs_a_list(shell):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="-o cannot be used"):
        shell.run_line_magic("pmap", "--iter -o out abs range(3)")


@pytest.mark.timeout(60)
def test_an_iterator_dropped_unfinished_stops_its_run():
    import gc

    results = pmap(abs, Counted(10_000_000), n_jobs=2, as_iter=True)
    assert next(results) == 0
    record = results.record
    del results
    gc.collect()
    until(lambda: record.status == "cancelled", "the dropped iterator's run to stop")


@pytest.mark.timeout(60)
def test_a_failure_reached_with_the_room_full_is_raised_not_waited_for():
    """The caller reaches a failed item while later results fill the room:
    it waits for the run's error, so nothing may hold the run back."""
    from parmagic.engine.result_iterator import ResultIterator

    def start_run(on_start, on_batch, cancel):
        on_start(object())
        on_batch(range(6), [0, None, 2, 3, 4, 5], {1})
        raise ZeroDivisionError("item 1")

    results = ResultIterator(start_run, room=2)
    assert next(results) == 0
    with pytest.raises(ZeroDivisionError, match="item 1"):
        next(results)
