"""``until=PRED`` / ``--until PRED``: a run stops as soon as a result
satisfies PRED, with what finished kept and the item that did it named."""

import asyncio
import time

import pytest

from parmagic import NOT_COMPUTED, ParmagicInputError, pmap, run


def slow_after_three(x):
    if x > 3:
        time.sleep(60)  # stopped, not waited for
    return x


async def async_slow_after_three(x):
    if x > 3:
        await asyncio.sleep(60)
    return x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["loky", "threading", "sequential", None])
def test_the_run_stops_at_the_first_result_that_satisfies_it(backend):
    func = async_slow_after_three if backend is None else slow_after_three
    record = run(func, [range(20)], backend=backend, n_jobs=2, batch_size=1,
                 until=lambda result: result == 3)
    assert record.status == "stopped" and record.stopped_by == 3
    assert record.results[3] == 3
    # items running beside it were stopped, unless they had finished
    assert all(value in (index, NOT_COMPUTED) for index, value in enumerate(record.results[:3]))
    assert all(value is NOT_COMPUTED for value in record.results[4:])
    assert "stopped by: item 3" in repr(record)


def test_without_a_satisfying_result_the_run_is_done():
    record = run(abs, [[-1, -2]], n_jobs=2, until=lambda result: result > 5)
    assert record.status == "done" and record.stopped_by is None
    assert record.results == [1, 2]


def test_of_several_results_that_satisfy_it_at_once_the_lowest_item_is_named():
    record = run(abs, [[-1, -7, -9, -8]], backend="sequential", batch_size=4,
                 until=lambda result: result > 5)
    assert record.stopped_by == 1


def test_a_result_from_the_cache_stops_the_run_too(tmp_path):
    calls = []

    def noted(x):
        calls.append(x)
        return x

    run(noted, [range(3)], backend="sequential", cache=tmp_path)
    calls.clear()
    record = run(noted, [range(10)], backend="sequential", cache=tmp_path,
                 until=lambda result: result == 1)
    assert record.stopped_by == 1 and calls == []  # nothing past the cached hit ran


def test_a_predicate_that_raises_fails_the_run_saying_where():
    with pytest.raises(ZeroDivisionError) as caught:
        pmap(abs, [1, 0], backend="sequential", until=lambda result: 1 / result > 5)
    assert any("until" in note and "item 1" in note for note in caught.value.__notes__)


def test_until_must_be_callable():
    with pytest.raises(ParmagicInputError, match="until must be a function"):
        pmap(abs, [1], until=5)


def test_the_magic_takes_an_expression(shell):
    shell.run_cell("def double(x):\n    return 2 * x\n")
    results = shell.run_line_magic("pmap", "-b sequential --until 'lambda r: r >= 4' double range(9)")
    assert results[:3] == [0, 2, 4] and shell.user_ns["_parmap"].stopped_by == 2
