"""A few items that a function's last run showed to be tiny go to one worker
as one chunk (parmagic/item_costs.py), and a worker hands back the items
of such a chunk that turn out slow, so that they still run side by side."""

import pytest
from cells import notebook_cell

from parmagic import run
from parmagic.engine import item_costs

NAP = """
    import os
    import time

    def nap(seconds):
        if seconds:
            time.sleep(seconds)
        return os.getpid()
"""


@pytest.fixture(autouse=True)
def no_op_items_are_tiny(monkeypatch):
    # Four items that do nothing take well under a millisecond in the workers,
    # on a loaded machine too; what counts as tiny is not what is tested.
    monkeypatch.setattr(item_costs, "ONE_CHUNK_WORK", 0.05)


def worker_pids(record):
    return {worker for (worker, _), *_ in record.spans}


def items_per_chunk(record):
    return sorted(n_items for *_, n_items in record.spans)


def test_a_few_tiny_items_go_as_one_chunk_once_the_function_has_run():
    nap = notebook_cell(NAP)["nap"]  # new code: nothing known of it yet
    first = run(nap, [[0] * 4], n_jobs=2, progress=False)
    assert items_per_chunk(first) == [2, 2]  # split evenly: nothing to go by
    second = run(nap, [[0] * 4], n_jobs=2, progress=False)
    assert items_per_chunk(second) == [4]
    assert len(set(second.results)) == 1


def test_items_that_turn_out_slow_are_handed_back_and_run_on_every_worker():
    nap = notebook_cell(NAP)["nap"]
    run(nap, [[0] * 4], n_jobs=2, progress=False)  # tiny: the next run is one chunk
    record = run(nap, [[0.3] * 4], n_jobs=2, progress=False)
    assert record.results[0] is not None and None not in record.results
    # the first item ran alone, then its worker handed the other three back
    assert items_per_chunk(record) == [1, 1, 1, 1]
    assert len(set(record.results)) == 2 == len(worker_pids(record))
    # and the slow run is what is remembered: the next run splits again
    after = run(nap, [[0] * 4], n_jobs=2, progress=False)
    assert items_per_chunk(after) == [2, 2]


def test_a_chunk_with_a_fixed_batch_size_or_a_time_limit_is_never_guessed():
    nap = notebook_cell(NAP)["nap"]
    run(nap, [[0] * 4], n_jobs=2, progress=False)
    assert items_per_chunk(run(nap, [[0] * 4], n_jobs=2, batch_size=1,
                               progress=False)) == [1, 1, 1, 1]
    assert items_per_chunk(run(nap, [[0] * 4], n_jobs=2, timeout=30,
                               progress=False)) == [1, 1, 1, 1]
