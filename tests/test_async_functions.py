"""Mapping an ``async def`` function: with no backend asked for, its items
run side by side on an event loop in a thread (``-n`` bounds how many at
once); on a backend that is asked for, each worker runs its chunks' items
side by side on a loop of its own. Either way each item is its own: its
result in order, its output, its time limit, its failure."""

import asyncio
import os
import time

import pytest

from parmagic import ItemTimeoutError, ParmagicInputError, pmap, run, start


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


def serial(func, items):
    return [asyncio.run(func(item)) for item in items]


def test_results_come_back_in_input_order_as_in_a_loop():
    items = [5, 3, 0, 9, 1]
    assert pmap(double, items) == serial(double, items) == [10, 6, 0, 18, 2]
    record = run(double, [items])
    assert record.backend == "asyncio" and record.n_jobs == 100  # the default in flight


in_flight = {"now": 0, "most": 0}


async def counted(barrier):
    in_flight["now"] += 1
    in_flight["most"] = max(in_flight["most"], in_flight["now"])
    await barrier.wait()  # passes only once `barrier.parties` items are in flight together
    in_flight["now"] -= 1
    return in_flight["most"]


@pytest.mark.timeout(30)  # a limit below 3 would never pass the barrier
def test_n_jobs_items_run_at_once_and_no_more():
    in_flight.update(now=0, most=0)
    barrier = asyncio.Barrier(3)
    assert pmap(counted, [barrier] * 9, n_jobs=3)
    assert in_flight["most"] == 3


async def talks(x):
    print("start", x)
    await asyncio.sleep(0.01 * (3 - x))  # the last to start ends first
    print("end", x)
    return x


def test_each_items_output_is_captured_apart_though_they_interleave():
    record = run(talks, [range(3)])
    assert record.outputs == [f"start {x}\nend {x}\n" for x in range(3)]


async def fails_on_two(x):
    await asyncio.sleep(0)
    if x == 2:
        raise KeyError(x)
    return x


def test_a_failing_item_raises_its_own_exception_naming_it():
    with pytest.raises(KeyError) as caught:
        pmap(fails_on_two, range(5))
    assert any("item 2" in note for note in caught.value.__notes__)


async def sleeps(seconds):
    await asyncio.sleep(seconds)
    return seconds


async def raises_its_own_timeout(_):
    raise TimeoutError("the server did not answer")


def test_an_item_past_its_time_limit_fails_alone_and_its_own_timeout_stays_its_own():
    with pytest.raises(ExceptionGroup) as caught:
        pmap(sleeps, [0, 30, 0], timeout=0.2, on_error="collect")
    (error,) = caught.value.exceptions
    assert isinstance(error, ItemTimeoutError) and "0.2 s time limit" in str(error)
    with pytest.raises(TimeoutError, match="did not answer") as own:
        pmap(raises_its_own_timeout, [1], timeout=5)
    assert not isinstance(own.value, ItemTimeoutError)


async def spans(x):
    print("at", x)
    started = time.perf_counter()
    await asyncio.sleep(0.2)
    return os.getpid(), started, time.perf_counter()


@pytest.mark.parametrize("backend", ["loky", "threading", "sequential"])
def test_on_a_backend_asked_for_the_items_run_in_its_workers(backend):
    record = run(spans, [range(4)], backend=backend, n_jobs=2, batch_size=4)
    pids = {pid for pid, _, _ in record.results}
    assert (os.getpid() not in pids) is (backend == "loky")
    assert record.outputs == [f"at {x}\n" for x in range(4)]


def test_the_items_of_a_loky_chunk_run_side_by_side_in_its_worker():
    record = run(spans, [range(4)], backend="loky", n_jobs=2, batch_size=4)
    (pid, _, first_end), *others = sorted(record.results, key=lambda span: span[1])
    assert {other[0] for other in others} == {pid}  # one chunk, one worker
    assert all(start < first_end for _, start, _ in others)  # all began before one ended


setup_calls = []


def setup_prefix():
    global PREFIX
    setup_calls.append(1)
    PREFIX = "item"


async def prefixed(x):
    await asyncio.sleep(0)
    return f"{PREFIX} {x}"  # noqa: F821 - set by setup_prefix


def test_init_runs_once_before_the_items():
    setup_calls.clear()
    assert pmap(prefixed, range(3), init=setup_prefix) == ["item 0", "item 1", "item 2"]
    assert setup_calls == [1]


attempts = {}


async def flaky(x):
    attempts[x] = attempts.get(x, 0) + 1
    if x == 1 and attempts[x] < 3:
        raise ConnectionError("try again")
    return x


def test_retries_run_a_failed_item_again():
    attempts.clear()
    record = run(flaky, [range(3)], retries=3)
    assert record.results == [0, 1, 2] and record.attempts == {1: 3}


def test_a_background_run_gives_its_result_and_can_be_cancelled():
    assert start(double, range(4)).result(timeout=30) == [0, 2, 4, 6]
    handle = start(sleeps, [30] * 3)
    handle.cancel()
    assert handle.wait(timeout=30) and handle.status == "cancelled"


def test_a_seed_is_refused_with_what_to_do():
    with pytest.raises(ParmagicInputError, match="seed.*async"):
        pmap(double, range(3), seed=1)


class CallsWithAFuncAttribute:
    """A plain callable that happens to hold an async function."""

    func = double

    def __call__(self, x):
        return x + 1


def test_only_async_functions_and_partials_of_them_are_awaited():
    import functools

    assert pmap(CallsWithAFuncAttribute(), [1, 2], backend="sequential") == [2, 3]
    assert pmap(functools.partial(double), [1, 2]) == [2, 4]
