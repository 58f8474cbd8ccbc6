"""max_tasks_per_worker (``--max-tasks-per-worker``): a loky worker that has
run that many items is replaced by a fresh process, quietly and without
breaking the pool; the results are those of a serial loop."""

import collections
import os
import warnings

import pytest

from parmagic import ParmagicInputError, WorkerCrashError, pmap, shutdown_workers


def with_pid(x):
    return x, os.getpid()


def die_at(x, which):
    if x == which:
        os._exit(3)
    return x


def ran_by(pairs):
    """How many items each worker process ran."""
    return collections.Counter(pid for _, pid in pairs)


@pytest.mark.parametrize("limit", [1, 3])
def test_no_worker_runs_more_than_the_limit_and_the_results_are_in_order(limit):
    pairs = pmap(with_pid, range(12), n_jobs=2, max_tasks_per_worker=limit)
    assert [x for x, _ in pairs] == list(range(12))
    counts = ran_by(pairs)
    assert max(counts.values()) <= limit
    assert len(counts) >= 12 // limit


def test_replacing_workers_breaks_nothing_and_loky_warns_nothing():
    # loky warns "A worker stopped while some jobs were given to the
    # executor" from its manager thread if a task is submitted just as a
    # worker it let go exits: the warning is caught here from any thread
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = pmap(with_pid, range(16), n_jobs=2, max_tasks_per_worker=1, batch_size=1)
    assert len(ran_by(pairs)) == 16
    assert [str(w.message) for w in caught] == []
    assert pmap(abs, [-1, -2, -3], n_jobs=2) == [1, 2, 3]


def test_items_are_counted_since_the_worker_started_over_runs():
    shutdown_workers()
    # one item to each worker per run (batch size 1, two workers idle)
    first = ran_by(pmap(with_pid, range(2), n_jobs=2, max_tasks_per_worker=2, batch_size=1))
    second = ran_by(pmap(with_pid, range(2), n_jobs=2, max_tasks_per_worker=2, batch_size=1))
    third = ran_by(pmap(with_pid, range(2), n_jobs=2, max_tasks_per_worker=2, batch_size=1))
    assert len(first) == 2 and set(second) == set(first)  # the same warm workers
    assert not set(third) & set(first)  # each had run 2: both replaced
    # a run without the limit keeps the fresh workers
    assert set(ran_by(pmap(with_pid, range(2), n_jobs=2, batch_size=1))) == set(third)


def test_a_worker_that_dies_after_others_were_replaced_is_reported_with_its_exit_code():
    with pytest.raises(WorkerCrashError) as caught:
        pmap(die_at, range(8), [6] * 8, n_jobs=2, max_tasks_per_worker=2, batch_size=1)
    assert "worker process died (EXIT(3))" in str(caught.value)
    assert 6 in caught.value.items
    assert pmap(abs, [-1, -2], n_jobs=2, max_tasks_per_worker=2) == [1, 2]


def test_a_background_run_replaces_its_own_workers():
    from parmagic.engine import core as engine

    handle = engine.start(with_pid, range(6), n_jobs=2, max_tasks_per_worker=1)
    pairs = handle.result()
    assert [x for x, _ in pairs] == list(range(6))
    assert max(ran_by(pairs).values()) == 1


@pytest.mark.parametrize("limit", [0, -1, 1.5, "3", True])
def test_a_limit_that_is_not_a_whole_number_of_items_is_an_input_error(limit):
    with pytest.raises(ParmagicInputError, match="max_tasks_per_worker must be a whole number"):
        pmap(abs, range(4), n_jobs=2, max_tasks_per_worker=limit)


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_the_limit_on_a_backend_without_loky_workers_is_an_input_error(backend):
    with pytest.raises(ParmagicInputError, match="max_tasks_per_worker limits loky's worker"):
        pmap(abs, range(4), n_jobs=2, backend=backend, max_tasks_per_worker=2)
