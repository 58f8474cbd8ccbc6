"""How many workers a run starts (parmagic/pool_size.py): never more than it
has items, a warning when more processes than cores would share them, and
extra workers that stop with their run instead of slowing the next call."""

import warnings

import pytest
from processes import worker_processes, stop_workers_and_wait

import parmagic
from parmagic import OversubscriptionWarning, run
from parmagic.engine import pool_size, warmup


def square(x):
    return x * x


def worker_pids(record):
    return {worker for (worker, _), *_ in record.spans}


def quiet_run(func, iterable, **options):
    """``run`` with the oversubscription warning recorded, not shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(func, [iterable], progress=False, **options)
    return record, [w for w in caught if w.category is OversubscriptionWarning]


CORES = pool_size.cores()
MANY = CORES + 2  # more jobs than cores, on any machine
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="a shared pool needs 2 cores")


def test_a_run_starts_no_more_workers_than_it_has_items():
    assert not stop_workers_and_wait()
    record, _ = quiet_run(square, range(CORES + 1), n_jobs=MANY)
    assert record.results == [x * x for x in range(CORES + 1)]
    assert record.startup.started == CORES + 1
    assert len(worker_pids(record)) <= CORES + 1


def test_a_generator_is_counted_before_the_workers_start():
    assert not stop_workers_and_wait()
    record, _ = quiet_run(square, (x for x in range(CORES + 1)), n_jobs=MANY)
    assert record.results == [x * x for x in range(CORES + 1)]
    assert record.startup.started == CORES + 1


def test_a_longer_generator_still_gets_every_job_and_every_item():
    record, _ = quiet_run(square, (x for x in range(3 * MANY)), n_jobs=MANY)
    assert record.results == [x * x for x in range(3 * MANY)]
    assert record.startup.started == MANY


def test_one_item_starts_one_worker_of_a_cold_pool_and_still_runs_in_a_worker():
    import os

    assert not stop_workers_and_wait()
    record, _ = quiet_run(lambda _: os.getpid(), [0], n_jobs=2)
    assert record.results != [os.getpid()]  # not in this process
    assert record.startup.started == 1


@needs_two_cores
def test_a_warm_pool_bigger_than_a_short_run_needs_is_used_as_it_is():
    assert not stop_workers_and_wait()
    quiet_run(square, range(10), n_jobs=2)  # starts two workers
    record, _ = quiet_run(square, [3], n_jobs=2)
    assert record.startup is None  # none started, none stopped


def test_more_workers_than_cores_warn_once_per_run_and_name_the_numbers():
    for _ in range(2):
        _, caught = quiet_run(square, range(CORES + 1), n_jobs=MANY)
        (warning,) = caught
        text = str(warning.message)
        assert text.startswith(f"{CORES + 1} worker processes (n_jobs={MANY}, one per item) "
                               f"on {CORES} CPU cores")
        assert "-n -1" in text and "-b threading" in text
        assert "\n" not in text


def test_the_warning_can_be_filtered_by_its_class():
    assert issubclass(parmagic.OversubscriptionWarning, UserWarning)
    assert "OversubscriptionWarning" in parmagic.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=OversubscriptionWarning)
        assert run(square, [range(CORES + 1)], n_jobs=MANY, progress=False).n_finished


@pytest.mark.parametrize("backend, n_items", [
    ("loky", CORES), ("threading", MANY), ("sequential", MANY)])
def test_no_warning_without_more_processes_than_cores(backend, n_items):
    _, caught = quiet_run(square, range(n_items), n_jobs=MANY, backend=backend)
    assert caught == []


def test_the_multiprocessing_backend_warns_too_and_starts_no_more_than_items():
    record, caught = quiet_run(square, range(CORES + 1), n_jobs=MANY,
                               backend="multiprocessing")
    assert record.results == [x * x for x in range(CORES + 1)]
    assert len(caught) == 1
    assert len(worker_pids(record)) <= CORES + 1


@needs_two_cores
def test_extra_workers_stop_with_their_run_and_the_warm_pool_stays():
    assert not stop_workers_and_wait()
    warm = worker_pids(quiet_run(square, range(4 * CORES), n_jobs=CORES)[0])
    before = {process.pid for process in worker_processes()}
    extra, _ = quiet_run(square, range(2 * MANY), n_jobs=MANY)
    assert not worker_pids(extra) & before  # a pool of its own
    assert {process.pid for process in worker_processes()} == before
    after, _ = quiet_run(square, range(4 * CORES), n_jobs=CORES)
    assert after.startup is None  # the next call starts nothing
    assert worker_pids(after) <= before and warm <= before


def test_a_call_during_the_warm_up_waits_for_it_and_counts_it_as_start_up():
    assert not stop_workers_and_wait()
    thread = warmup.start(2)
    record, _ = quiet_run(square, range(8), n_jobs=2)
    assert not thread.is_alive()
    assert record.startup.started == 2
    assert record.startup.seconds > 0
    assert "2 workers started" in str(record.timing())


def test_an_input_that_fails_while_read_ahead_fails_the_run_as_before():
    def items():
        yield 1
        raise LookupError("the input broke")

    records = []
    with pytest.raises(LookupError, match="the input broke"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OversubscriptionWarning)
            run(square, [items()], n_jobs=MANY, on_start=records.append, progress=False)
    assert records[0].status == "failed"
